"""End to end: the real CLI in a subprocess against the real sandbox process on loopback."""

from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from pipeline import results as results_mod
from pipeline.sandbox import DEFAULT_API_KEY, DEFAULT_DEVELOPER_SECRET, DEFAULT_ORG_ID

from .conftest import CREDENTIAL_ENV, make_rows, run_cli, server_contexts


def ingest(box, inputs, results: Path, *extra: str, env=None):
    return run_cli(
        "run",
        *map(str, inputs),
        "--base-url",
        box.url,
        "--results",
        str(results),
        "--rate",
        "500",
        "--concurrency",
        "16",
        *extra,
        env=env,
    )


def bad_rows() -> dict:
    rows = make_rows(12, seed=3, prefix="mixed")
    rows["sir_flag"][1] = "keepwarm"
    rows["sir_channel"][2] = "fax"
    rows["sir_planned_dt"][3] = "2026-02-30 09:00:00"
    rows["contact_id"][4] = "12345"
    rows["sir_context"][5] = ""
    for column in rows:
        rows[column][7] = rows[column][6]  # an exact repeat of row 7
    return rows


def test_happy_path_with_bad_rows_csv_and_parquet(sandbox, write_input, tmp_path):
    box = sandbox("--latency", "1-5")
    csv = write_input("a.csv", bad_rows())
    parquet = write_input("b.parquet", make_rows(20, seed=4, prefix="parquet"))
    out = tmp_path / "res.csv"
    result = ingest(box, [csv, parquet], out)
    assert result.code == 1, result.stderr
    frame = results_mod.read(out)
    assert frame.columns[:15] == list(results_mod.RESULT_COLUMNS)
    assert frame.height == 32
    assert frame["source"].to_list() == ["a.csv"] * 12 + ["b.parquet"] * 20
    assert frame["source_row"].to_list() == list(range(1, 13)) + list(range(1, 21))
    by_row = dict(zip(frame["source_row"][:12], frame["error_code"][:12], strict=True))
    assert [by_row[i] for i in (2, 3, 4, 5, 6, 8)] == [
        "INVALID_FLAG",
        "INVALID_CHANNEL",
        "INVALID_DATETIME",
        "INVALID_UUID",
        "MISSING_FIELDS",
        "DUPLICATE_KEY",
    ]
    assert Counter(frame["status"]) == {"created": 26, "invalid": 5, "duplicate": 1}
    # invalid rows never reach the server; created ones match its record
    created = box.created()
    assert len(created) == 26
    server_ids = {r["sir_id"] for r in created}
    assert set(frame.filter(pl.col("status") == "created")["sir_id"].to_list()) == server_ids
    assert "mixed 1" not in server_contexts(box)  # the bad-flag row
    # a rerun sends nothing
    again = ingest(box, [csv, parquet], out)
    assert again.code == 1 and box.stats()["requests"] == 26
    assert results_mod.read(out)["sir_id"].to_list() == frame["sir_id"].to_list()
    # report reads it back
    rep = run_cli("report", str(out))
    assert rep.code == 0 and "created" in rep.stdout and "INVALID_FLAG" in rep.stdout


def test_parquet_results_and_exit_zero(sandbox, write_input, tmp_path):
    box = sandbox()
    out = tmp_path / "res.parquet"
    result = ingest(box, [write_input("a.csv", make_rows(10))], out)
    assert result.code == 0, result.stderr
    frame = pl.read_parquet(out)
    assert frame["status"].to_list() == ["created"] * 10 and frame["sir_id"].dtype == pl.Int64


def test_429_and_503_are_retried_to_success(sandbox, write_input, tmp_path):
    box = sandbox(
        "--rate-limit", "15", "--retry-after", "0", "--error-rate", "0.2", "--error-statuses", "503", "--seed", "5"
    )
    out = tmp_path / "res.csv"
    config = tmp_path / "fast-backoff.toml"
    config.write_text("[run]\nbackoff_base = 0.05\nbackoff_cap = 0.5\n")
    rows = write_input("a.csv", make_rows(60))
    result = ingest(
        box, [rows], out, "--max-attempts", "20", "--read-timeout", "5", "--config", str(config), "--rate", "30"
    )
    assert result.code == 0, result.stderr
    answers = box.stats()["answers"]
    assert answers.get("429", 0) > 0 and answers.get("503", 0) > 0
    contexts = server_contexts(box)
    assert len(contexts) == 60 == len(set(contexts))
    assert results_mod.read(out)["attempts"].max() > 1
    assert result.event("run.summary")["retries"] > 0


def test_retries_exhausted_become_failed_and_are_sent_next_run(sandbox, write_input, tmp_path):
    failing = sandbox("--error-rate", "1.0", "--error-statuses", "503", "--retry-after", "0")
    rows = write_input("a.csv", make_rows(5))
    out = tmp_path / "res.csv"
    first = run_cli(
        "run", str(rows), "--base-url", failing.url, "--results", str(out), "--max-attempts", "2", "--rate", "100"
    )
    assert first.code == 1
    frame = results_mod.read(out)
    assert set(frame["status"]) == {"failed"} and frame["error_code"][0].startswith("HTTP_5")
    assert frame["attempts"].to_list() == [2] * 5
    healthy = sandbox()
    second = ingest(healthy, [rows], out)
    assert second.code == 0 and len(healthy.created()) == 5
    assert results_mod.read(out)["attempts"].to_list() == [3] * 5


def test_bad_credentials_abort_with_3_then_good_ones_complete(sandbox, write_input, tmp_path):
    box = sandbox()
    rows = write_input("a.csv", make_rows(50))
    out = tmp_path / "res.csv"
    bad = {**CREDENTIAL_ENV, "ZYNTRO_DEVELOPER_SECRET": "zdk_wrong_secret"}
    result = ingest(box, [rows], out, "--rate", "20", "--concurrency", "2", env=bad)
    assert result.code == 3
    assert "INVALID_DEVELOPER_SECRET" in result.stderr and "revoke and reissue" in result.stderr
    assert box.stats()["requests"] <= 4 and box.created() == []
    assert set(results_mod.read(out)["status"]) == {"pending"}
    good = ingest(box, [rows], out)
    assert good.code == 0 and len(box.created()) == 50


def test_ip_not_whitelisted_aborts(sandbox, write_input, tmp_path):
    box = sandbox("--whitelist", "10.9.9.9")
    result = ingest(box, [write_input("a.csv", make_rows(5))], tmp_path / "r.csv", "--concurrency", "1")
    assert result.code == 3 and "whitelist" in result.stderr


def put(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


HEADER = "contact_id,sir_flag,sir_context,sir_planned_dt,sir_channel\n"


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda d: d / "missing.csv", "does not exist"),
        (lambda d: put(d / "x.txt", "a"), "not .csv"),
        (lambda d: put(d / "nocol.csv", "contact_id,sir_flag\n1,keep_warm\n"), "sir_context"),
        (lambda d: put(d / "empty.csv", ""), "empty"),
        (lambda d: put(d / "ragged.csv", HEADER + "a,b,c,d,e\n" * 3 + "a,b,c,d,e,f,g\n"), "ragged.csv"),
        (lambda d: put(d / "bad.parquet", b"PAR1 not really"), "bad.parquet"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_sends_nothing(sandbox, tmp_path, make, needle):
    box = sandbox()
    path = make(tmp_path)
    result = ingest(box, [path], tmp_path / "r.csv")
    assert result.code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("si-ingest: error:")]
    assert len(lines) == 1 and needle in lines[0]
    assert "Traceback" not in result.stderr
    assert box.stats()["requests"] == 0


def test_missing_credentials_and_bad_flags_exit_2(sandbox, write_input, tmp_path):
    box = sandbox()
    rows = write_input("a.csv", make_rows(3))
    result = ingest(box, [rows], tmp_path / "r.csv", env={})
    assert result.code == 2 and "ZYNTRO_API_KEY" in result.stderr
    result = ingest(box, [rows], tmp_path / "r.csv", "--rate", "fast")
    assert result.code == 2
    assert box.stats()["requests"] == 0


def test_column_mapping_and_default_org_from_config(sandbox, tmp_path):
    box = sandbox()
    rows = make_rows(4)
    export = pl.DataFrame(
        {
            "Contact UUID": rows["contact_id"],
            "Action": rows["sir_flag"],
            "Channel": rows["sir_channel"],
            "Notes": rows["sir_context"],
            "When": rows["sir_planned_dt"],
            "Owner": ["x"] * 4,
        }
    )
    export.write_csv(tmp_path / "export.csv")
    config = tmp_path / "c.toml"
    config.write_text(
        f'[input]\ndefault_org_id = "{DEFAULT_ORG_ID}"\n[columns]\ncontact_id = "Contact UUID"\nsir_flag = "Action"\n'
        'sir_channel = "Channel"\nsir_context = "Notes"\nsir_planned_dt = "When"\n'
    )
    env = {"ZYNTRO_API_KEY": DEFAULT_API_KEY, "ZYNTRO_DEVELOPER_SECRET": DEFAULT_DEVELOPER_SECRET}
    result = ingest(box, [tmp_path / "export.csv"], tmp_path / "r.csv", "--config", str(config), env=env)
    assert result.code == 0, result.stderr
    assert all("Owner" not in r and r["org_id"] == DEFAULT_ORG_ID for r in box.created())


def test_validate_sends_nothing_and_needs_no_credentials(sandbox, write_input, tmp_path):
    rows = write_input("a.csv", bad_rows())
    out = tmp_path / "v.csv"
    result = run_cli("validate", str(rows), "--results", str(out), env={"ZYNTRO_ORG_ID": DEFAULT_ORG_ID})
    assert result.code == 1, result.stderr
    assert "would send: 6 rows" in result.stdout
    assert Counter(results_mod.read(out)["status"]) == {"pending": 6, "invalid": 5, "duplicate": 1}


def test_no_credential_in_any_output(sandbox, write_input, tmp_path):
    secret_key, secret = "key-SUPERSECRET-1", "zdk_SUPERSECRET_2"
    box = sandbox(
        "--api-key",
        secret_key,
        "--developer-secret",
        secret,
        "--drop-after",
        "0.1",
        "--error-rate",
        "0.1",
        "--seed",
        "2",
    )
    env = {"ZYNTRO_API_KEY": secret_key, "ZYNTRO_DEVELOPER_SECRET": secret, "ZYNTRO_ORG_ID": DEFAULT_ORG_ID}
    out = tmp_path / "r.csv"
    result = ingest(box, [write_input("a.csv", make_rows(40))], out, "--log-format", "json", env=env)
    wrong = ingest(
        box,
        [write_input("b.csv", make_rows(5, seed=9))],
        tmp_path / "w.csv",
        env={**env, "ZYNTRO_DEVELOPER_SECRET": "zdk_OTHER_SECRET"},
    )
    assert wrong.code == 3
    texts = [result.stdout, result.stderr, wrong.stdout, wrong.stderr]
    texts += [
        p.read_text(errors="replace") for p in tmp_path.iterdir() if p.is_file() and not p.name.startswith("sandbox")
    ]
    for text in texts:
        assert secret_key not in text and secret not in text and "zdk_OTHER_SECRET" not in text


def test_demo_runs_end_to_end(tmp_path):
    from pipeline.demo import MARKER
    from pipeline.ledger import seal

    (tmp_path / "demo").mkdir()  # what an earlier demo leaves: its lock file counts its keys
    (tmp_path / "demo" / MARKER).write_text("")
    (tmp_path / "demo" / "si-results.csv.lock").write_text(f"pid 1 on host\n{seal.floor_line(296)}\n")
    (tmp_path / "demo" / "si-results.csv.journal").write_text("left by the last demo\n")
    (tmp_path / "demo" / "si-results.csv.journal.recovered-20261127T000000Z").write_text("x\n")  # it blocked (h9a)
    result = run_cli("demo", "--output", str(tmp_path / "demo"), env={})
    assert result.code == 0, result.stderr
    assert "created" in result.stdout and "NOT_FOUND" in result.stdout
    frame = results_mod.read(tmp_path / "demo" / "si-results.csv")
    assert frame.height == 310 and (frame["status"] == "created").sum() > 250


def test_the_demo_never_starts_over_a_folder_it_did_not_make(sandbox, write_input, tmp_path):
    """`demo --output DIR` deleted the results, journal and lock file of a real job in DIR, and the
    job's next run sent every row again (found by a review, h9b)."""
    box = sandbox()
    rows = write_input("a.csv", make_rows(3))
    job = tmp_path / "job"
    job.mkdir()
    assert ingest(box, [rows], job / "si-results.csv").code == 0
    before = sorted(p.name for p in job.iterdir())
    refused = run_cli("demo", "--output", str(job), env={})
    assert refused.code == 2 and "which the demo did not make" in refused.stderr, refused.stderr
    assert sorted(p.name for p in job.iterdir()) == before
    assert ingest(box, [rows], job / "si-results.csv").code == 0 and len(box.created()) == 3


def test_rate_ceiling_holds_at_the_server(sandbox, write_input, tmp_path):
    """--rate 40 over 120 rows. The limiter's exact bound is proven on a virtual clock
    (test_limiter); here, through real processes, the 10% slack absorbs a starved CI core,
    while aiolimiter's unbounded start burst (~2x in the first second) would still fail."""
    box = sandbox("--latency", "2-10")
    result = ingest(
        box, [write_input("a.csv", make_rows(120))], tmp_path / "r.csv", "--rate", "40", "--concurrency", "8"
    )
    assert result.code == 0, result.stderr
    assert box.stats()["peak_1s"] <= 44


def test_rate_auto_finds_the_server_limit(sandbox, write_input, tmp_path):
    box = sandbox("--rate-limit", "15", "--retry-after", "1")
    out = tmp_path / "r.csv"
    result = ingest(box, [write_input("a.csv", make_rows(90))], out, "--rate", "auto", "--max-attempts", "10")
    assert result.code == 0, result.stderr
    contexts = server_contexts(box)
    assert len(contexts) == 90 == len(set(contexts))
    assert box.stats()["answers"].get("429", 0) > 0


def test_wrong_base_url_stops_at_once_with_exit_2(sandbox, write_input, tmp_path):
    box = sandbox()
    out = tmp_path / "r.csv"
    wrong = box.url.replace("/crm", "/crn")
    result = run_cli(
        "run",
        str(write_input("a.csv", make_rows(40))),
        "--base-url",
        wrong,
        "--results",
        str(out),
        "--rate",
        "20",
        "--concurrency",
        "2",
    )
    assert result.code == 2 and "no addSIRequest endpoint" in result.stderr
    assert set(results_mod.read(out)["status"]) == {"pending"}
    assert box.stats()["requests"] == 0 and box.created() == []  # the endpoint itself never saw them


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (("--error-after", "1.0"), "HTTP_5"),  # a gateway page after the request was created
        (("--cut-after", "1.0"), "CONNECTION_LOST"),  # the success answer cut short
        (("--trickle-after", "1.0", "--trickle-interval", "0.2"), "READ_TIMEOUT"),  # an answer that drips
        (("--malformed-rate", "1.0"), "UNEXPECTED_RESPONSE"),  # a 2xx that is not the API's JSON
        (("--error-after", "1.0", "--error-after-statuses", "503"), "HTTP_503"),  # Envoy: backend reset
    ],
    ids=["5xx-after", "cut-after", "trickle-after", "malformed-2xx", "envoy-503-after"],
)
def test_answers_that_may_follow_a_creation_are_unknown_and_never_resent(sandbox, write_input, tmp_path, fault, code):
    box = sandbox(*fault)
    rows = write_input("a.csv", make_rows(6))
    out = tmp_path / "r.csv"
    result = ingest(box, [rows], out, "--read-timeout", "1", "--max-attempts", "5")
    assert result.code == 1, result.stderr
    frame = results_mod.read(out)
    assert set(frame["status"]) == {"unknown"} and all(c.startswith(code) for c in frame["error_code"])
    assert box.stats()["requests"] == 6  # not one retry
    again = ingest(box, [rows], out)
    assert again.code == 1 and box.stats()["requests"] == 6
    contexts = server_contexts(box)
    assert len(contexts) == len(set(contexts))


@pytest.mark.parametrize("status", ["301", "302", "303"])
def test_a_redirect_after_a_processed_post_is_unknown_and_stops_the_run(sandbox, write_input, tmp_path, status):
    """A 303 (or 301/302) is how a server answers a POST it processed: the row is `unknown`, never
    `failed` (a rerun would send it again), and the run stops (every request would be redirected)."""
    box = sandbox("--error-after", "1.0", "--error-after-statuses", status)
    rows = write_input("a.csv", make_rows(6))
    out = tmp_path / "r.csv"
    result = ingest(box, [rows], out, "--concurrency", "1")
    assert result.code == 2 and f"HTTP {status} redirect to" in result.stderr and "--base-url" in result.stderr
    frame = results_mod.read(out)
    assert frame["status"].to_list() == ["unknown"] + ["pending"] * 5 and frame["error_code"][0] == f"HTTP_{status}"
    assert len(box.created()) == 1
    healthy = sandbox()
    again = ingest(healthy, [rows], out)
    assert again.code == 1 and len(healthy.created()) == 5  # the unknown row is not sent again
    contexts = server_contexts(box) + server_contexts(healthy)
    assert len(contexts) == len(set(contexts)) == 6


def test_an_answer_for_another_rows_request_stops_the_run_and_creates_nothing_more(sandbox, write_input, tmp_path):
    """A gateway put the previous request's body on this one (Caddy's retry with buffer_requests):
    the API created that row again and answered for it. The row is `unknown`, never `created`
    with another row's sir_id, and the run stops at once (exit 3)."""
    box = sandbox("--mixed-body", "0.3", "--seed", "7")
    rows = write_input("a.csv", make_rows(40))
    out = tmp_path / "r.csv"
    result = ingest(box, [rows], out, "--concurrency", "1")
    assert result.code == 3, result.stderr
    assert "ANSWER_MISMATCH" in result.stderr and "mixes requests up" in result.stderr
    frame = results_mod.read(out)
    mixed = frame.filter(pl.col("error_code") == "ANSWER_MISMATCH")
    assert mixed.height == 1 and mixed["status"][0] == "unknown" and mixed["sir_id"][0] is None
    assert frame.filter(pl.col("status") == "pending").height > 20  # stopped at once
    by_id = {r["sir_id"]: r["contact_id"] for r in box.created()}
    for row in frame.filter(pl.col("status") == "created").iter_rows(named=True):
        assert by_id[row["sir_id"]] == row["contact_id"]  # every `created` is its own row's record
    contexts = server_contexts(box)
    assert len(contexts) - len(set(contexts)) == 1  # the gateway's one mixed request, no more
    healthy = sandbox()
    assert ingest(healthy, [rows], out).code == 1  # the unknown row is not sent again
    assert len(set(contexts) | set(server_contexts(healthy))) == 39 and len(healthy.created()) == 40 - len(by_id)


def test_a_gateways_could_not_connect_page_is_unknown_and_never_resent(sandbox, write_input, tmp_path):
    """Apache Traffic Server's 502 "Could Not Connect" comes while its origin is down, but also for
    a read error after the request was written (a review found it in ATS's state machine; retried,
    a row was created three times): it stays `unknown`, as any 502."""
    box = sandbox("--connect-failed", "0.5", "--seed", "3")
    rows = write_input("a.csv", make_rows(8))
    out = tmp_path / "r.csv"
    result = ingest(box, [rows], out, "--max-attempts", "5")
    assert result.code == 1, result.stderr
    frame = results_mod.read(out)
    gateway = frame.filter(pl.col("status") == "unknown")
    assert gateway.height == box.stats()["answers"]["502_connect_failed"] > 0
    assert set(gateway["error_code"]) == {"HTTP_502"}
    assert box.stats()["requests"] == 8  # not one retry
    assert ingest(box, [rows], out).code == 1 and box.stats()["requests"] == 8


def test_a_redirect_after_rows_were_created_names_the_gateways_error_page(sandbox, write_input, tmp_path):
    """Apache's `ErrorDocument 502 http://...` turns a backend failure into a 302: after rows went
    through the same base URL, "check --base-url" misled; the line now names the error page first."""
    box = sandbox("--error-after", "0.2", "--error-after-statuses", "302", "--seed", "5")
    rows = write_input("a.csv", make_rows(30))
    out = tmp_path / "r.csv"
    result = ingest(box, [rows], out, "--concurrency", "1")
    assert result.code == 2, result.stderr
    frame = results_mod.read(out)
    created = frame.filter(pl.col("status") == "created").height
    assert created > 0 and frame.filter(pl.col("status") == "unknown").height == 1
    line = [ln for ln in result.stderr.splitlines() if ln.startswith("si-ingest:")][-1]
    assert f"after {created} row(s) were created through this base URL" in line and "ErrorDocument" in line


def test_retry_503_off_leaves_503s_unknown_and_never_resent(sandbox, write_input, tmp_path):
    """For a gateway that answers 503 when its backend failed after the request went up
    (Varnish, an nginx error_page mapping 502 to 503): `retry_503 = false`."""
    box = sandbox("--error-rate", "1.0", "--error-statuses", "503", "--retry-after", "0")
    config = tmp_path / "c.toml"
    config.write_text("[api]\nretry_503 = false\n")
    rows = write_input("a.csv", make_rows(4))
    out = tmp_path / "r.csv"
    result = ingest(box, [rows], out, "--config", str(config))
    assert result.code == 1, result.stderr
    frame = results_mod.read(out)
    assert set(frame["status"]) == {"unknown"} and set(frame["error_code"]) == {"HTTP_503"}
    assert box.stats()["requests"] == 4
    assert ingest(box, [rows], out, "--config", str(config)).code == 1 and box.stats()["requests"] == 4


def test_requests_that_all_end_unknown_stop_the_run_after_ten(sandbox, write_input, tmp_path):
    """A gateway that fails every request after it leaves (its timeout shorter than the API's
    latency) would turn a whole export into rows to check by hand: ten unknowns in a row stop
    the run (exit 3), the rest stay pending and go out on the next run."""
    box = sandbox("--error-after", "1.0", "--error-after-statuses", "504")
    rows = write_input("a.csv", make_rows(40))
    out = tmp_path / "r.csv"
    result = ingest(box, [rows], out, "--concurrency", "2")
    assert result.code == 3, result.stderr
    assert "the last 10 requests all ended unknown (last: HTTP_504)" in result.stderr
    counts = Counter(results_mod.read(out)["status"])
    assert 10 <= counts["unknown"] <= 11 and counts["unknown"] + counts["pending"] == 40
    assert box.stats()["requests"] == counts["unknown"]
    healthy = sandbox()
    assert ingest(healthy, [rows], out).code == 1 and len(healthy.created()) == counts["pending"]


def test_auto_rate_finds_a_gateway_that_delays_instead_of_refusing(sandbox, write_input, tmp_path):
    """nginx limit_req with a burst and no nodelay never refuses: it holds requests back. Slow start
    had parked --concurrency requests in its queue past the read timeout (79 of 150 rows unknown,
    never passed on, in the real-gateway sweep); the wait itself now reads as a throttle."""
    box = sandbox("--leaky-rate", "20", "--leaky-burst", "1000", "--leaky-delay")
    rows = write_input("a.csv", make_rows(150))
    out = tmp_path / "r.csv"
    result = ingest(box, [rows], out, "--rate", "auto", "--concurrency", "64", "--read-timeout", "1.5")
    assert result.code == 0, result.stderr
    assert set(results_mod.read(out)["status"]) == {"created"} and box.stats()["requests"] == 150


def test_rows_an_earlier_run_tried_go_after_the_rows_never_tried(sandbox, write_input, tmp_path):
    """`failed` rows are sent again every run: first in the file, rows the API keeps refusing with
    an undocumented message (a date it will not take) tripped the breaker night after night and
    no row behind them was ever sent. Rows never tried now go first."""
    old, new = make_rows(5, seed=1, prefix="old"), make_rows(5, seed=2, prefix="new")
    out = tmp_path / "r.csv"
    refusing = sandbox("--odd-error-rate", "1.0")
    assert ingest(refusing, [write_input("a.csv", old)], out).code == 1
    assert set(results_mod.read(out)["status"]) == {"failed"}
    both = {k: old[k] + new[k] for k in old}
    healthy = sandbox()
    result = ingest(healthy, [write_input("b.csv", both)], out, "--concurrency", "1")
    assert result.code == 0, result.stderr
    assert server_contexts(healthy) == new["sir_context"] + old["sir_context"]
    assert results_mod.read(out)["source_row"].to_list() == list(range(1, 11))  # the results stay in input order


def test_the_gateway_switch_retries_500_502_504(sandbox, write_input, tmp_path):
    box = sandbox("--error-rate", "0.3", "--error-statuses", "500,502,504", "--seed", "4")
    config = tmp_path / "c.toml"
    config.write_text("[api]\nretry_gateway_errors = true\n[run]\nbackoff_base = 0.01\n")
    result = ingest(box, [write_input("a.csv", make_rows(30))], tmp_path / "r.csv", "--config", str(config),
                    "--max-attempts", "10")  # fmt: skip
    assert result.code == 0, result.stderr
    assert sum(box.stats()["answers"].get(s, 0) for s in ("500", "502", "504")) > 0


def test_a_reset_sandbox_is_as_it_started(sandbox, write_input, tmp_path):
    """The harness reuses a sandbox per set of flags (conftest): a reset must leave nothing of the
    last test, the rate limit's clock and the first sir_id included."""
    box = sandbox("--rate-limit", "5", "--retry-after", "0")
    rows = write_input("a.csv", make_rows(3))
    assert ingest(box, [rows], tmp_path / "r1.csv").code == 0
    first = [r.get("sir_id") for r in box.created()]
    box.reset()
    assert box.stats()["requests"] == 0 and box.created() == [] and box.record.read_text() == ""
    assert ingest(box, [rows], tmp_path / "r2.csv").code == 0
    assert [r.get("sir_id") for r in box.created()] == first and box.stats()["peak_1s"] <= 5
