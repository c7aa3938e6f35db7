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
    assert "would send: 300 rows (settled earlier: 0); at --rate 20 that takes about 0:00:15" in result.stdout


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
