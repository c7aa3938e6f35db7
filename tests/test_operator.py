"""What operators see, through the CLI: JSON lines, the progress bar, the summary, the breaker."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import results as results_mod
from pipeline.sandbox import DEFAULT_ORG_ID

from .conftest import CREDENTIAL_ENV, make_rows, run_cli


def run_args(box, inputs, out: Path, *extra: str) -> list[str]:
    return ["run", *map(str, inputs), "--base-url", box.url, "--results", str(out), *extra]


def test_off_a_terminal_every_stderr_line_is_json_and_progress_starts_at_once(sandbox, write_input, tmp_path):
    box = sandbox("--latency", "40-60")
    summary = tmp_path / "summary.json"
    result = run_cli(
        *run_args(box, [write_input("a.csv", make_rows(60))], tmp_path / "r.csv", "--rate", "40", "--concurrency", "4"),
        "--progress-every", "0.3", "--summary-json", str(summary),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]  # raises on any other line
    names = [e["event"] for e in events]
    start = names.index("submit.start")
    assert names[start + 1] == "run.progress"  # the first snapshot at once, not after a period
    progress = [e for e in events if e["event"] == "run.progress"]
    assert len(progress) >= 4 and progress[-1]["done"] == 60 and progress[-1]["created"] == 60
    assert all(p["done"] <= p["to_send"] == 60 for p in progress)
    document = json.loads(summary.read_text())
    assert document["schema_version"] == 1 and document["command"] == "run"
    assert document["by_status"]["created"] == 60 and document["requests"] == 60
    assert sum(second["requests"] for second in document["timeline"]) == 60
    assert document["latency_ms"]["p50"] >= 40 and document["peak_rate"] <= 40
    assert "written: " in result.stdout and "latency p50" in result.stdout


def test_log_level_quiets_the_info_lines(sandbox, write_input, tmp_path):
    box = sandbox()
    result = run_cli(*run_args(box, [write_input("a.csv", make_rows(3))], tmp_path / "r.csv", "--log-level", "warning"))
    assert result.code == 0 and result.stderr == ""


def test_the_breaker_stops_when_every_answer_is_the_same_row_error(sandbox, write_input, tmp_path):
    nobody = tmp_path / "contacts.txt"
    nobody.write_text("00000000-0000-4000-8000-000000000000\n")  # the org has none of the export's contacts
    box = sandbox("--contacts", str(nobody))
    out = tmp_path / "r.csv"
    result = run_cli(
        *run_args(box, [write_input("a.csv", make_rows(80))], out, "--concurrency", "1", "--breaker", "10")
    )
    assert result.code == 3, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("si-ingest: aborted:")]
    assert "the last 10 answers were all NOT_FOUND" in line and "another org" in line
    frame = results_mod.read(out)
    assert (frame["status"] == "rejected").sum() == 10 == box.stats()["requests"]
    assert (frame["status"] == "pending").sum() == 70


def test_validate_estimates_the_send(write_input, tmp_path):
    result = run_cli(
        "validate", str(write_input("a.csv", make_rows(300))), "--results", str(tmp_path / "v.csv"),
        env={"ZYNTRO_ORG_ID": DEFAULT_ORG_ID},
    )  # fmt: skip
    assert result.code == 0
    assert (
        "would send: 300 rows (settled earlier: 0); at --rate 20 that takes about 0:00:16" in result.stdout
    )  # 300 / (20 / 1.04)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")
def test_a_terminal_gets_a_live_progress_bar_with_logs_above_it(sandbox, write_input, tmp_path):
    box = sandbox("--latency", "50-50")
    rows = write_input("a.csv", make_rows(120))
    out = tmp_path / "r.csv"
    env = " ".join(f"{k}={v}" for k, v in CREDENTIAL_ENV.items())
    command = f"cd {tmp_path} && env -u COLUMNS -u LINES {env} {sys.executable} -m pipeline " + " ".join(
        run_args(box, [rows], out, "--rate", "40", "--concurrency", "4")
    )
    session = f"si-test-{tmp_path.name[-12:]}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "250", "-y", "40", command + "; sleep 30"],
                   check=True)  # fmt: skip
    try:
        screens = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout
            screens.append(screen)
            if "written:" in screen:
                break
            time.sleep(0.25)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    live = [s for s in screens if "sending" in s and "/120" in s and "written:" not in s]
    assert live, screens[-1]
    bar = live[-1]
    assert "created" in bar and "/s (limit 40/s)" in bar
    final = screens[-1]
    assert "120/120" in final and re.search(r"created\s+120", final)
    assert final.index("submit.start") < final.index("120/120")  # the log line printed above the bar


def test_run_writes_the_html_report_with_its_timeline(sandbox, write_input, tmp_path):
    box = sandbox("--latency", "5-10")
    html = tmp_path / "report.html"
    out = tmp_path / "r.csv"
    result = run_cli(
        *run_args(box, [write_input("a.csv", make_rows(30))], out, "--rate", "60", "--report-html", str(html))
    )
    assert result.code == 0, result.stderr
    page = html.read_text()
    assert "<svg" in page and "no timeline was recorded" not in page.lower() and str(out) in page
    assert str(html) in result.stdout


ORG_A = "11111111-1111-4111-8111-111111111111"
ORG_B = "22222222-2222-4222-8222-222222222222"


def two_org_rows() -> dict[str, list[str]]:
    rows = make_rows(20, seed=31)
    rows["org_id"] = [ORG_A if i % 2 else ORG_B.upper() for i in range(20)]  # case does not matter
    return rows


def two_org_config(tmp_path: Path) -> Path:
    config = tmp_path / "agency.toml"
    config.write_text(
        f'[orgs."{ORG_A}"]\napi_key_env = "KEY_A"\nrate = 50\n[orgs."{ORG_B}"]\napi_key_env = "KEY_B"\nrate = "auto"\n'
    )
    return config


def test_multi_org_rows_go_out_with_their_own_key(sandbox, write_input, tmp_path):
    box = sandbox("--account", f"key-a:{ORG_A}", "--account", f"key-b:{ORG_B}")
    env = {"KEY_A": "key-a", "KEY_B": "key-b", "ZYNTRO_DEVELOPER_SECRET": CREDENTIAL_ENV["ZYNTRO_DEVELOPER_SECRET"]}
    out = tmp_path / "r.csv"
    args = run_args(box, [write_input("a.csv", two_org_rows())], out, "--config", str(two_org_config(tmp_path)))
    result = run_cli(*args, env=env)
    assert result.code == 0, result.stderr
    accounts = [(r["org_id"].lower(), r["account"]) for r in box.created()]
    assert len(accounts) == 20 and all(org == account for org, account in accounts)


def test_an_account_error_stops_only_its_org(sandbox, write_input, tmp_path):
    box = sandbox("--account", f"key-a:{ORG_A}", "--account", f"key-b:{ORG_B}")
    env = {"KEY_A": "key-a", "KEY_B": "revoked", "ZYNTRO_DEVELOPER_SECRET": CREDENTIAL_ENV["ZYNTRO_DEVELOPER_SECRET"]}
    out = tmp_path / "r.csv"
    summary = tmp_path / "s.json"
    args = run_args(box, [write_input("a.csv", two_org_rows())], out, "--config", str(two_org_config(tmp_path)))
    result = run_cli(*args, "--summary-json", str(summary), "--concurrency", "2", env=env)
    assert result.code == 3, result.stderr
    assert f"aborted for org {ORG_B}: INVALID_API_KEY" in result.stderr
    assert "check the API key in KEY_B" in result.stderr and "ZYNTRO_API_KEY" not in result.stderr  # its own variable
    frame = results_mod.read(out)
    by_org = {org: set(frame.filter(frame["org_id"].str.to_lowercase() == org)["status"]) for org in (ORG_A, ORG_B)}
    assert by_org == {ORG_A: {"created"}, ORG_B: {"pending"}}
    codes = set(frame.filter(frame["org_id"].str.to_lowercase() == ORG_B)["error_code"])
    assert codes <= {None, "INVALID_API_KEY"} and "INVALID_API_KEY" in codes  # no INTERRUPTED: no signal came
    document = json.loads(summary.read_text())
    assert document["orgs"][ORG_B]["aborted"]["code"] == "INVALID_API_KEY"
    # each org's own ceiling; the run's line had shown a rate neither org had (review h9b)
    assert document["orgs"][ORG_A]["rate"] == {"mode": "fixed", "limit": 50.0}
    assert document["orgs"][ORG_B]["rate"]["mode"] == "auto" and document["rate"]["mode"] == "per org"
    assert document["orgs"][ORG_A]["aborted"] is None and document["orgs"][ORG_A]["requests"] == 10


def test_rows_of_an_org_without_a_key_stop_the_run_before_any_request(sandbox, write_input, tmp_path):
    box = sandbox()
    config = tmp_path / "one.toml"
    config.write_text(f'[orgs."{ORG_A}"]\napi_key_env = "KEY_A"\n')
    env = {"KEY_A": "key-a", "ZYNTRO_DEVELOPER_SECRET": "zdk"}
    rows = write_input("a.csv", two_org_rows())
    result = run_cli(*run_args(box, [rows], tmp_path / "r.csv", "--config", str(config)), env=env)
    assert result.code == 2 and f"rows of org {ORG_B} have no API key" in result.stderr
    assert box.stats()["requests"] == 0


def test_friendlier_inputs_still_strict(sandbox, write_input, tmp_path):
    box = sandbox()
    rows = make_rows(5, seed=41)
    del rows["sir_channel"]  # the file has no channel column: [defaults] gives it
    rows["sir_flag"] = ["Keep_Warm", "KEEP_WARM", "keep_warm", "keep-warm", "keep_warm"]
    rows["sir_planned_dt"] = [
        "05/04/2026 09:00", "2026-04-05 10:00:00", "31/12/2026 23:59", "13/13/2026 09:00", "tomorrow 9am"
    ]  # fmt: skip
    config = tmp_path / "friendly.toml"
    config.write_text(
        '[input]\ndatetime_formats = ["%d/%m/%Y %H:%M"]\nnormalize_case = true\n'
        '[defaults."plans.csv"]\nsir_channel = "email"\n'
    )
    out = tmp_path / "r.csv"
    result = run_cli(*run_args(box, [write_input("plans.csv", rows)], out, "--config", str(config)))
    assert result.code == 1, result.stderr
    frame = results_mod.read(out)
    assert frame["status"].to_list() == ["created", "created", "created", "invalid", "invalid"]
    assert frame["error_code"].to_list()[3:] == ["INVALID_FLAG", "INVALID_DATETIME"]
    sent = sorted((r["sir_planned_dt"], r["sir_flag"], r["sir_channel"]) for r in box.created())
    assert sent == [
        ("2026-04-05 09:00:00", "keep_warm", "email"),
        ("2026-04-05 10:00:00", "keep_warm", "email"),
        ("2026-12-31 23:59:00", "keep_warm", "email"),
    ]
    assert not [e for e in result.events if e["event"] == "config.defaults_unused"]
    typo = tmp_path / "typo.toml"  # [defaults] for a file that is not an input: said (review h9b)
    typo.write_text('[defaults."plan.csv"]\nsir_channel = "email"\n')
    told = run_cli("validate", str(tmp_path / "plans.csv"), "--results", str(tmp_path / "t.csv"), "--config", str(typo))
    assert told.code == 2 and told.event("config.defaults_unused")["file"] == "plan.csv"
    strict = tmp_path / "strict.toml"
    strict.write_text('[defaults."plans.csv"]\nsir_channel = "fax"\n')
    bad = run_cli(*run_args(box, [tmp_path / "plans.csv"], tmp_path / "s.csv", "--config", str(strict)))
    assert bad.code == 2 and "sir_channel must be one of" in bad.stderr


async def test_the_library_entry_point_returns_the_summary(sandbox, write_input, tmp_path, monkeypatch):
    import pipeline

    box = sandbox()
    for name, value in CREDENTIAL_ENV.items():
        monkeypatch.setenv(name, value)
    config = pipeline.load_config(
        None, {"run.results": tmp_path / "r.csv", "api.base_url": box.url.removesuffix("/"), "run.rate": 100.0}
    )
    result = await pipeline.run([write_input("a.csv", make_rows(12))], config, pipeline.load_credentials(config))
    assert isinstance(result, pipeline.RunResult) and result.exit_code == 0
    assert result.document["by_status"]["created"] == 12 and result.document["schema_version"] == 1
    with pytest.raises(pipeline.PipelineError):
        await pipeline.run([tmp_path / "missing.csv"], config, pipeline.load_credentials(config))


def test_the_library_result_type_resolves_its_hints_and_a_run_that_sends_nothing_never_loads_aiohttp():
    import subprocess
    import sys

    probe = (
        "import sys, typing, pipeline\n"
        "hints = typing.get_type_hints(pipeline.RunResult)\n"  # frameworks (Dagster, pydantic) introspect it
        "print(hints['stats'], 'aiohttp' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["pipeline.submit.SubmitStats", "|", "None", "False"]


def test_a_gateways_404_after_another_orgs_rows_were_created_is_retried(sandbox, write_input, tmp_path):
    """One base URL for every org: once the API has answered through it, a 404 is a gateway's
    missing route for a moment. Each org's lane had known only its own answers, so org B's first
    request drawing a 404 stopped the run with exit 2 after org A's rows were created (found by
    a review, h12)."""
    box = sandbox("--account", f"key-a:{ORG_A}", "--account", f"key-b:{ORG_B}", "--error-rate", "0.3",
                  "--error-statuses", "404", "--seed", "7")  # fmt: skip
    env = {"KEY_A": "key-a", "KEY_B": "key-b", "ZYNTRO_DEVELOPER_SECRET": CREDENTIAL_ENV["ZYNTRO_DEVELOPER_SECRET"]}
    rows = make_rows(40, seed=32)
    rows["org_id"] = [ORG_A] * 20 + [ORG_B] * 20
    out = tmp_path / "r.csv"
    config = tmp_path / "c.toml"
    config.write_text(
        f'[run]\nbackoff_base = 0.01\nbackoff_cap = 0.02\n[orgs."{ORG_A}"]\napi_key_env = "KEY_A"\n'
        f'[orgs."{ORG_B}"]\napi_key_env = "KEY_B"\n'
    )
    args = run_args(box, [write_input("a.csv", rows)], out, "--config", str(config), "--concurrency", "1")
    result = run_cli(*args, "--max-attempts", "8", env=env)
    assert result.code == 0 and len(box.created()) == 40, result.stderr
