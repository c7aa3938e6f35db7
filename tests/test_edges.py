"""Edges through the CLI: paths, exit codes, signals at awkward moments, internal errors."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from pipeline import cli
from pipeline import results as results_mod
from pipeline.report import write_document as _real_write
from pipeline.sandbox import DEFAULT_ORG_ID
from pipeline.submit import Submitter

from .conftest import CREDENTIAL_ENV, make_rows, run_cli, server_contexts, wait_for
from .test_resume import cli_process


def run_args(box, inputs, out: Path, *extra: str) -> list[str]:
    return ["run", *map(str, inputs), "--base-url", box.url, "--results", str(out), "--rate", "500", *extra]


def one_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("si-ingest: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_results_that_cannot_be_written_or_are_an_input_stop_before_any_request(sandbox, write_input, tmp_path):
    box = sandbox()
    rows = write_input("a.csv", make_rows(5))
    folder = tmp_path / "out.csv"
    folder.mkdir()
    result = run_cli(*run_args(box, [rows], folder))
    assert result.code == 2 and "is a folder" in one_error(result.stderr)
    result = run_cli(*run_args(box, [rows], rows))
    assert result.code == 2 and "one of the inputs" in one_error(result.stderr)
    assert rows.read_text().startswith("contact_id")  # the export is untouched
    assert box.stats()["requests"] == 0


def test_validate_exit_code_gates_a_scheduled_run(write_input, tmp_path):
    env = {"ZYNTRO_ORG_ID": DEFAULT_ORG_ID}
    clean = run_cli("validate", str(write_input("a.csv", make_rows(5))), "--results", str(tmp_path / "v.csv"), env=env)
    assert clean.code == 0, clean.stderr
    bad = make_rows(5)
    bad["sir_planned_dt"][2] = "2026-12-31 23:59:60"
    bad["sir_planned_dt"][3] = "0000-01-01 09:00:00"
    dirty = run_cli("validate", str(write_input("b.csv", bad)), "--results", str(tmp_path / "w.csv"), env=env)
    assert dirty.code == 1
    frame = results_mod.read(tmp_path / "w.csv")
    assert frame["error_code"].to_list()[2:4] == ["INVALID_DATETIME", "INVALID_DATETIME"]


def test_a_config_typo_names_the_closest_key(write_input, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[run]\nconcurency = 4\n")
    result = run_cli("validate", str(write_input("a.csv", make_rows(2))), "--config", str(config))
    assert result.code == 2 and "did you mean 'run.concurrency'" in one_error(result.stderr)


def test_a_signal_during_a_retry_after_pause_ends_the_run_at_once(sandbox, write_input, tmp_path):
    box = sandbox("--rate-limit", "2", "--retry-after", "3600")
    rows = write_input("a.csv", make_rows(20))
    out = tmp_path / "r.csv"
    proc = cli_process(*run_args(box, [rows], out, "--concurrency", "2"))
    wait_for(lambda: box.stats()["answers"].get("429", 0) > 0, timeout=30)
    time.sleep(0.3)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 10
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    paused = [e for e in events if e["event"] == "run.paused"]
    assert [(e["seconds"], e["http_status"]) for e in paused] == [(3600, 429)]  # said once, with why
    frame = results_mod.read(out)
    assert frame.height == 20 and Counter(frame["status"])["created"] == len(box.created())
    # the contract: `failed` is for --max-attempts used up; a row stopped while it waited for its
    # next try is `pending`, with its last answer and the try it had
    assert set(frame["status"]) == {"created", "pending"}
    throttled = frame.filter(pl.col("error_code") == "HTTP_429")
    assert throttled.height >= 1 and set(throttled["status"]) == {"pending"}
    assert set(throttled["attempts"]) == {1} and set(throttled["http_status"]) == {429}


def test_a_signal_while_loading_exits_130_and_removes_the_work_folder(tmp_path):
    rows = make_rows(1)
    big = pl.DataFrame({k: v * 400_000 for k, v in rows.items()}).with_columns(
        sir_context=pl.format("ctx {}", pl.int_range(pl.len()))
    )
    path = tmp_path / "big.csv"
    big.write_csv(path)
    out = tmp_path / "r.csv"
    proc = cli_process("validate", str(path), "--results", str(out))
    wait_for(lambda: (tmp_path / "r.csv.work").exists() or proc.poll() is not None, timeout=30)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert not (tmp_path / "r.csv.work").exists()


def _importing_polars(pid: int) -> bool:
    try:
        return "polars" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return True  # gone: the assertions below say how


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_while_python_still_imports_exits_130_in_one_line(tmp_path, write_input, signum):
    # on main a SIGTERM in the first half second killed the run silently (143) and a SIGINT
    # printed a KeyboardInterrupt traceback from numpy's import
    rows = write_input("a.csv", make_rows(5))
    proc = cli_process("validate", str(rows), "--results", str(tmp_path / "r.csv"))
    wait_for(lambda: _importing_polars(proc.pid), timeout=30, interval=0.002)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().startswith("si-ingest: interrupted by "), stderr
    assert signal.Signals(signum).name in stderr and not (tmp_path / "r.csv.work").exists()


def test_an_internal_error_exits_4_with_a_report_and_the_results_rendered(
    sandbox, write_input, tmp_path, monkeypatch, capsys
):
    box = sandbox()
    rows = write_input("a.csv", make_rows(30))
    out = tmp_path / "r.csv"
    original = Submitter._record
    seen = []

    def flaky(self, outcome, **kwargs):
        original(self, outcome, **kwargs)
        seen.append(outcome)
        if len(seen) == 10:
            raise RuntimeError("a bug in the submit loop")

    monkeypatch.setattr(Submitter, "_record", flaky)
    monkeypatch.chdir(tmp_path)
    for name, value in CREDENTIAL_ENV.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(run_args(box, [rows], out, "--concurrency", "1", "--log-format", "json"))
    assert exit_info.value.code == 4
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("si-ingest: internal error")]
    report = Path(line.rsplit(" ", 1)[-1])
    assert report.exists() and "RuntimeError: a bug in the submit loop" in report.read_text()
    assert CREDENTIAL_ENV["ZYNTRO_DEVELOPER_SECRET"] not in report.read_text()
    frame = results_mod.read(out)  # rendered from the ledger: what was created shows
    assert Counter(frame["status"])["created"] == len(box.created()) >= 9
    monkeypatch.setattr(Submitter, "_record", original)
    again = run_cli(*run_args(box, [rows], out))
    assert again.code in (0, 1), again.stderr
    contexts = server_contexts(box)
    assert len(contexts) == len(set(contexts))


def test_https_verifies_the_certificate_and_takes_a_ca_bundle(sandbox, write_input, tmp_path, self_signed):
    key, cert = self_signed
    box = sandbox("--tls-cert", str(cert), "--tls-key", str(key))
    assert box.url.startswith("https://")
    rows = write_input("a.csv", make_rows(5))
    out = tmp_path / "r.csv"
    refused = run_cli("run", str(rows), "--base-url", box.url, "--results", str(out))
    assert refused.code == 2 and "Traceback" not in refused.stderr
    [line] = [line for line in refused.stderr.splitlines() if line.startswith("si-ingest: aborted:")]
    assert "certificate cannot be verified" in line and "ca_bundle" in line
    assert box.created() == [] and set(results_mod.read(out)["status"]) == {"pending"}
    config = tmp_path / "tls.toml"
    config.write_text(f'[api]\nca_bundle = "{cert}"\n')
    trusted = run_cli("run", str(rows), "--base-url", box.url, "--results", str(out), "--config", str(config))
    assert trusted.code == 0, trusted.stderr
    assert len(box.created()) == 5


def test_an_undocumented_error_is_failed_and_sent_again_next_run(sandbox, write_input, tmp_path):
    odd = sandbox("--odd-error-rate", "1.0")
    rows = write_input("a.csv", make_rows(4))
    out = tmp_path / "r.csv"
    first = run_cli(*run_args(odd, [rows], out))
    assert first.code == 1
    frame = results_mod.read(out)
    assert set(frame["status"]) == {"failed"} and set(frame["error_code"]) == {"API_ERROR"}
    assert odd.stats()["requests"] == 4  # an error answer is final for this run
    healthy = sandbox()
    assert run_cli(*run_args(healthy, [rows], out)).code == 0 and len(healthy.created()) == 4


def test_the_heap_left_by_planning_is_frozen_while_sending_and_released_after(
    sandbox, write_input, tmp_path, monkeypatch
):
    # full GC passes over the objects of imports and planning put the loop's p99 lag at 17-20 ms
    # (bench/RESULTS.md, Rate, section 3); frozen while sending, they are not walked
    import gc

    box = sandbox()
    rows = write_input("a.csv", make_rows(5))
    original = Submitter._record
    frozen: list[int] = []

    def record(self, outcome, **kwargs):
        frozen.append(gc.get_freeze_count())
        original(self, outcome, **kwargs)

    monkeypatch.setattr(Submitter, "_record", record)
    monkeypatch.chdir(tmp_path)
    for name, value in CREDENTIAL_ENV.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(run_args(box, [rows], tmp_path / "r.csv", "--log-format", "json"))
    assert exit_info.value.code == 0 and len(box.created()) == 5
    assert len(frozen) == 5 and min(frozen) > 10_000  # the modules, config and plan: all frozen
    assert gc.get_freeze_count() == 0


DISK_FULL = """
import os, sys
import polars as pl
target = sys.argv.pop(1)
write = pl.DataFrame.write_parquet
def full(self, file, *args, **kwargs):  # the disk fills while this work file is written
    if os.path.basename(str(file)).startswith(target):
        file = "/dev/full"
    return write(self, file, *args, **kwargs)
pl.DataFrame.write_parquet = full
write_csv = pl.DataFrame.write_csv
def full_csv(self, file=None, *args, **kwargs):  # the same for a CSV written into an open file
    if os.path.basename(str(getattr(file, "name", file))).startswith(target):
        file = open("/dev/full", "wb")
    return write_csv(self, file, *args, **kwargs)
pl.DataFrame.write_csv = full_csv
from pipeline import entry
entry.main(sys.argv[1:])
"""


def disk_full(target: str, *argv: str, cwd: Path) -> tuple[int, str]:
    """The CLI with every Parquet file whose name starts with `target` written to /dev/full:
    (exit code, the one stderr line). Runs in `cwd`, where a crash report would land."""
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", DISK_FULL, target, *argv],
        env={**os.environ, "ZYNTRO_ORG_ID": DEFAULT_ORG_ID}, capture_output=True, text=True, timeout=60, cwd=cwd,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # polars calls it a ComputeError: it was exit 4 and a crash file
    assert not list(cwd.glob("si-ingest-crash-*"))
    return done.returncode, lines[0]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize(
    ("work_file", "results"),
    [
        ("input-000000", "r.parquet"),  # a spill (validate writes a CSV's results in pass 1 instead)
        ("keys-000000", "r.csv"),
        ("repeats-000000", "r.csv"),  # the repeat's verdict (pass 1 sets a repeat within a key run apart)
        ("results.csv", "r.csv"),  # validate's results, written in pass 1 (result_rows.py)
    ],
)
def test_a_full_disk_while_writing_a_work_file_is_one_line_and_exit_2(write_input, tmp_path, work_file, results):
    out = tmp_path / results
    rows = make_rows(50)
    for column in rows:  # a repeat: a verdict to write (none is written where there is no verdict)
        rows[column].append(rows[column][7])
    code, line = disk_full(work_file, "validate", str(write_input("a.csv", rows)), "--results", str(out),
                           cwd=tmp_path)  # fmt: skip
    assert code == 2
    assert line.startswith("si-ingest: error: cannot write work file") and work_file in line
    assert not list(tmp_path.glob("*.work"))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_while_report_errors_stages_its_parts_is_one_line_and_exit_2(write_input, tmp_path):
    rows = make_rows(30)
    rows["sir_flag"][3] = "not_a_flag"  # one invalid row: the error file has a part to write
    source = write_input("a.csv", rows)
    out = tmp_path / "r.csv"
    assert run_cli("validate", str(source), "--results", str(out), env={"ZYNTRO_ORG_ID": DEFAULT_ORG_ID}).code == 1
    code, line = disk_full("part-", "report", str(out), "--errors", str(tmp_path / "errors.csv"), "--inputs",
                           str(source), cwd=tmp_path)  # fmt: skip
    assert code == 2  # it was exit 4 with a crash file
    assert line.startswith("si-ingest: error: cannot write work file") and "part-000000.parquet" in line
    assert not (tmp_path / "errors.csv").exists()


def test_an_idle_connection_is_not_reused_past_keepalive_timeout(sandbox, write_input, tmp_path):
    """A gateway closing idle connections (Apache after 5 s) races a request sent on one at that
    moment, and that loss cannot be told from a created request: the client stops reusing a
    connection before the gateway's timeout (`[api] keepalive_timeout`, default 4 s)."""
    box = sandbox("--keepalive-timeout", "30")
    rows = write_input("a.csv", make_rows(6))
    common = ("--rate", "5", "--concurrency", "1")
    reused = run_cli(*run_args(box, [rows], tmp_path / "r1.csv", *common))
    assert reused.code == 0, reused.stderr
    assert box.stats()["connections"] == 1  # 0.2 s apart: one connection carried all six
    config = tmp_path / "short.toml"
    config.write_text("[api]\nkeepalive_timeout = 0.05\n")
    fresh = run_cli(*run_args(box, [rows], tmp_path / "r2.csv", *common, "--config", str(config)))
    assert fresh.code == 0, fresh.stderr
    assert box.stats()["connections"] == 1 + 6 and box.stats()["created"] == 12  # idle 0.2 s > 0.05 s: never reused


def test_auto_rate_backs_off_from_a_gateway_that_sheds_load_with_503(sandbox, write_input, tmp_path):
    """nginx's limit_req answers 503 by default: auto mode cuts its rate on those as on 429s (it
    had kept growing: 88 refusals for 300 rows against a 100/s bucket), and retries the rows."""
    box = sandbox("--leaky-rate", "100", "--leaky-burst", "10", "--leaky-status", "503")
    rows = write_input("a.csv", make_rows(300, seed=9))
    out = tmp_path / "r.csv"
    done = run_cli(*run_args(box, [rows], out, "--concurrency", "16", "--rate", "auto"))  # the last --rate wins
    assert done.code == 0, done.stderr
    stats = box.stats()
    assert stats["created"] == 300 and set(results_mod.read(out)["status"]) == {"created"}
    assert stats["answers"].get("503_limit", 0) <= 15, stats  # 1-4 in trials; 88 before


def test_a_log_reader_that_goes_away_does_not_stop_the_run(sandbox, write_input, tmp_path):
    """stderr a pipe whose reader closes mid-send (or a full disk under 2>>log): the run finishes,
    every row created once (it had stopped mid-send, exit 1, rows pending and unknown)."""
    import os
    import subprocess
    import sys

    box = sandbox("--latency", "1-3")
    rows = write_input("a.csv", make_rows(900, seed=41))
    out = tmp_path / "r.csv"
    env = {**os.environ, **CREDENTIAL_ENV}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *run_args(box, [rows], out, "--rate", "400", "--log-format", "json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None and proc.stdout is not None
    wait_for(lambda: box.stats()["created"] >= 100, timeout=30)
    proc.stderr.close()  # the log reader goes away while rows are being sent
    proc.stdout.read()
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert box.stats()["created"] == 900 and set(results_mod.read(out)["status"]) == {"created"}


def _signalling(monkeypatch, target, name: str, times: int, seen: list[str]):
    """Patch `target.name` to send this process SIGTERM `times` times as it starts."""
    import os

    original = getattr(target, name)

    def wrapped(*args, **kwargs):
        for _ in range(times):
            seen.append(name)
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapped)


def _in_process(monkeypatch, tmp_path, argv: list[str]) -> int:
    monkeypatch.chdir(tmp_path)
    for name, value in CREDENTIAL_ENV.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--log-format", "json"])
    return int(exit_info.value.code)


@pytest.mark.parametrize("failing", [False, True])
def test_a_signal_while_the_work_folder_is_removed_lets_it_go_whole(write_input, tmp_path, monkeypatch, failing):
    """SIGTERM near the end of a validate, while its work folder was being removed: the removal
    stopped half way and up to 170 MB stayed behind (found by a review, h11b). It is finished,
    then the run exits 130; or with its own error's code, where it was failing already (a bad
    row: exit 2, not 130; review h12)."""
    import os
    import shutil

    rows = write_input("a.csv", make_rows(20))
    if failing:  # a short last row stops the run in pass 1: exit 2
        rows.write_text(rows.read_text() + "x,y\n")
    seen: list[str] = []
    original = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if str(path).endswith(".work") and not seen:
            seen.append(str(path))
            os.kill(os.getpid(), signal.SIGTERM)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    code = _in_process(monkeypatch, tmp_path, ["validate", str(rows), "--results", str(tmp_path / "r.csv")])
    assert code == (2 if failing else 130) and seen and not (tmp_path / "r.csv.work").exists()


def test_a_signal_after_the_last_request_still_writes_the_results(sandbox, write_input, tmp_path, monkeypatch, capfd):
    """SIGTERM while the journal is folded: it had its default action there (killed, exit 143,
    no results file, the work folder left) and SIGINT skipped the results."""
    from pipeline.ledger import Ledger

    box = sandbox()
    rows = write_input("a.csv", make_rows(12))
    out = tmp_path / "r.csv"
    seen: list[str] = []
    _signalling(monkeypatch, Ledger, "finish", 1, seen)
    before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
    assert _in_process(monkeypatch, tmp_path, run_args(box, [rows], out)) == 130
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)] == before  # put back
    err = capfd.readouterr().err
    assert seen == ["finish"] and "si-ingest: SIGTERM: every request has finished; writing the results" in err
    frame = results_mod.read(out)
    assert frame.height == 12 and set(frame["status"]) == {"created"} and len(box.created()) == 12
    assert not (tmp_path / "r.csv.work").exists() and "seal " in (tmp_path / "r.csv.lock").read_text()


def test_a_second_signal_after_the_last_request_stops_at_once_and_the_rerun_writes(
    sandbox, write_input, tmp_path, monkeypatch, capsys
):
    from pipeline import runner
    from pipeline.ledger import Ledger

    box = sandbox()
    rows = write_input("a.csv", make_rows(12))
    out = tmp_path / "r.csv"
    seen: list[str] = []
    _signalling(monkeypatch, Ledger, "finish", 1, seen)
    _signalling(monkeypatch, runner.results, "render", 1, seen)
    assert _in_process(monkeypatch, tmp_path, run_args(box, [rows], out)) == 130
    err = capsys.readouterr().err
    assert seen == ["finish", "render"] and "si-ingest: error: stopped by SIGTERM while writing the results" in err
    assert not out.exists() and not (tmp_path / "r.csv.work").exists()
    monkeypatch.undo()
    again = run_cli(*run_args(box, [rows], out))
    assert again.code == 0 and len(box.created()) == 12 == box.stats()["requests"]
    assert set(results_mod.read(out)["status"]) == {"created"}


@pytest.mark.parametrize("nohup", [False, True])
def test_sighup_stops_a_run_as_sigterm_does_unless_started_under_nohup(sandbox, write_input, tmp_path, nohup):
    """The terminal gone: SIGHUP had its default action (exit 129, no results, the work folder left)."""
    box = sandbox("--latency", "100-100")
    rows = write_input("a.csv", make_rows(30))
    out = tmp_path / "r.csv"
    ignore = (lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if nohup else None
    proc = cli_process(*run_args(box, [rows], out, "--concurrency", "2", "--rate", "40"), preexec_fn=ignore)
    wait_for(lambda: box.stats()["requests"] >= 4, timeout=30)
    proc.send_signal(signal.SIGHUP)
    _, stderr = proc.communicate(timeout=60)
    frame = results_mod.read(out)
    assert not (tmp_path / "r.csv.work").exists()
    if nohup:
        assert proc.returncode == 0 and set(frame["status"]) == {"created"}, stderr
    else:
        assert proc.returncode == 130 and '"signal": "SIGHUP"' in stderr, stderr
        assert set(frame["status"]) == {"created", "pending"} and len(box.created()) < 30
        assert Counter(frame["status"])["created"] == len(box.created())


def test_a_results_path_that_is_a_symlink_is_refused_and_a_linked_folder_shares_one_ledger(
    sandbox, write_input, tmp_path
):
    """Through a symlink, the journal and lock had gone beside the link and the results were renamed
    over it: a later run given the target's own path found no ledger and sent every row again (500
    of 500 in a review's repro). Following the link instead gave a link re-pointed every night a
    new empty ledger each night (20 of 20 sent twice). So a linked results file is refused."""
    import os

    box = sandbox()
    rows = write_input("a.csv", make_rows(20, seed=51))
    (tmp_path / "volume").mkdir()
    real = tmp_path / "volume" / "r.csv"
    link = tmp_path / "r.csv"
    os.symlink(real, link)
    for argv in (run_args(box, [rows], link), ["ledger", "check", str(link)]):
        refused = run_cli(*argv)
        assert refused.code == 2 and "is a symbolic link" in one_error(refused.stderr)
    assert box.stats()["requests"] == 0 and link.is_symlink() and not real.exists()
    assert run_cli(*run_args(box, [rows], real)).code == 0 and box.stats()["requests"] == 20
    os.symlink(tmp_path / "volume", tmp_path / "via")  # a linked folder names the same file and ledger
    assert run_cli(*run_args(box, [rows], tmp_path / "via" / "r.csv")).code == 0 and box.stats()["requests"] == 20
    assert run_cli("report", str(link)).code == 0  # reading follows it


@pytest.mark.parametrize("closed", ["<&-", ">&-", "2>&-"])
def test_a_run_started_with_a_standard_descriptor_closed_finishes(sandbox, write_input, tmp_path, closed):
    """uvloop aborted (exit 134: libuv's `fd > STDERR_FILENO` assertion) when the loop's own
    descriptor landed on a closed 0-2: after every row was created, or with stderr closed before any."""
    import os
    import shlex
    import subprocess
    import sys

    box = sandbox()
    rows = write_input("a.csv", make_rows(6))
    out = tmp_path / "r.csv"
    argv = shlex.join([sys.executable, "-m", "pipeline", *run_args(box, [rows], out)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZYNTRO_")} | CREDENTIAL_ENV
    proc = subprocess.run(["sh", "-c", f"exec {argv} {closed}"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert set(results_mod.read(out)["status"]) == {"created"} and box.stats()["requests"] == 6


@pytest.mark.parametrize("rate", ["1000", "auto"])
def test_a_gateway_refusing_every_request_stops_the_run(sandbox, write_input, tmp_path, rate):
    """A load balancer with every backend down answers each request at once with its own 503
    (HAProxy "No server is available", an ALB with no healthy target): no breaker counted it,
    so every row took --max-attempts tries with backoff, 100k rows ~18 h at a fixed rate and
    ~6 days in auto mode, a nightly run never ending (found by a review, h11a)."""
    box = sandbox("--error-rate", "1", "--error-statuses", "503", "--retry-after", "0")
    rows = write_input("a.csv", make_rows(24, seed=62))
    out = tmp_path / "r.csv"
    config = tmp_path / "c.toml"
    config.write_text("[run]\nbackoff_base = 0.01\nbackoff_cap = 0.02\n")
    streak = 10 if rate != "auto" else 3  # auto mode slows down on every 503: a shorter streak, a faster test
    down = run_cli(
        *run_args(box, [rows], out), "--config", str(config), "--concurrency", "2", "--max-attempts", "3",
        "--rate", rate, "--breaker", str(streak),
    )  # fmt: skip
    assert down.code == 3, down.stderr
    line = one_error(down.stderr.replace("si-ingest: aborted:", "si-ingest: error:"))
    assert f"the last {streak} rows were refused in 3 tries each (last: HTTP 503" in line, line
    counts = Counter(results_mod.read(out)["status"])
    assert streak <= counts["failed"] <= streak + 1 and counts["failed"] + counts["pending"] == 24
    assert counts["created"] == 0 and box.stats()["requests"] <= 3 * (streak + 1) + 2
    up = sandbox()
    again = run_cli(*run_args(up, [rows], out))
    assert again.code == 0 and up.stats()["requests"] == 24  # nothing was created: every row goes once


def test_an_ordinary_rate_limit_never_trips_the_refused_rows_breaker(sandbox, write_input, tmp_path):
    """A 1 s window at half the run's rate, one try per row: in each second 10 rows pass and the
    next 10 draw 429s in a row, which the first version of the refused-rows breaker took for a
    service that is down (exit 3 after 10 rows, every night; found by a review, h12). The API
    answers every second, so the run goes on: the rows refused end `failed`, exit 1."""
    box = sandbox("--rate-limit", "10", "--retry-after", "0")
    rows = write_input("a.csv", make_rows(45, seed=65))
    out = tmp_path / "r.csv"
    done = run_cli(*run_args(box, [rows], out), "--rate", "20", "--max-attempts", "1")
    counts = Counter(results_mod.read(out)["status"])
    assert done.code == 1 and counts["pending"] == 0 and counts["created"] == len(box.created()) >= 20, done.stderr


def test_a_gateways_404_after_the_api_answered_is_retried_not_a_wrong_base_url(sandbox, write_input, tmp_path):
    """An ingress without the route for a moment (a deploy) answers 404 mid-run: the run had
    stopped with exit 2 ("nothing was sent") after rows were created, blaming --base-url (found
    by a review, h11a). Once the API has answered through the base URL, a 404 is a gateway's
    "not processed": retried, and every row is created once."""
    box = sandbox("--error-rate", "0.2", "--error-statuses", "404", "--seed", "7")
    rows = write_input("a.csv", make_rows(40, seed=63))
    out = tmp_path / "r.csv"
    config = tmp_path / "c.toml"
    config.write_text("[run]\nbackoff_base = 0.01\nbackoff_cap = 0.02\n")
    done = run_cli(*run_args(box, [rows], out), "--config", str(config), "--concurrency", "1", "--max-attempts", "8")
    created = results_mod.read(out)["status"].to_list()
    first_404 = box.stats()["requests"] > 40
    assert done.code == 0 and created == ["created"] * 40 and first_404, done.stderr
    assert len(box.created()) == 40
    # before any answer from the API, a 404 still means a wrong base URL: exit 2, nothing sent
    wrong = sandbox("--error-rate", "1", "--error-statuses", "404")
    refused = run_cli(*run_args(wrong, [rows], tmp_path / "r2.csv"))
    assert refused.code == 2 and "no addSIRequest endpoint at this base URL" in refused.stderr


def test_an_answer_replayed_by_a_cache_stops_the_run(sandbox, write_input, tmp_path):
    """A gateway caching POST answers (nginx `proxy_cache_methods POST`) gave later rows the first
    row's success: they were recorded `created` with its sir_id, though nothing was created for
    them, and never sent again (found by a review, h11a). A sir_id this run was already given for
    another row stops the run (exit 3, ANSWER_MISMATCH); that row is `unknown`."""
    box = sandbox("--replay-rate", "0.3", "--seed", "11")
    planned = make_rows(40, seed=64)
    planned["contact_id"] = [planned["contact_id"][0]] * 40  # one contact's actions: the echo matches
    rows = write_input("a.csv", planned)
    out = tmp_path / "r.csv"
    done = run_cli(*run_args(box, [rows], out), "--concurrency", "1")
    assert done.code == 3, done.stderr
    line = one_error(done.stderr.replace("si-ingest: aborted:", "si-ingest: error:"))
    assert "repeats sir_id" in line and "replays answers" in line, line
    frame = results_mod.read(out)
    created = frame.filter(pl.col("status") == "created")
    assert created["sir_id"].n_unique() == created.height == len(box.created())  # each one real, once
    replayed = frame.filter(pl.col("status") == "unknown")
    assert replayed.height == 1 and replayed["error_code"].to_list() == ["ANSWER_MISMATCH"]


def test_an_api_that_cannot_be_reached_stops_the_run(sandbox, write_input, tmp_path):
    """Connection refused: no breaker counted it, so every row took --max-attempts tries with
    backoff (100k rows: ~15 h against a refused port, ~8 days against one that drops packets)."""
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rows = write_input("a.csv", make_rows(60, seed=61))
    out = tmp_path / "r.csv"
    config = tmp_path / "c.toml"
    config.write_text("[run]\nbackoff_base = 0.01\nbackoff_cap = 0.02\n")
    down = run_cli(
        "run", str(rows), "--base-url", f"http://127.0.0.1:{port}", "--results", str(out), "--config", str(config),
        "--concurrency", "2", "--max-attempts", "3", "--rate", "1000",
    )  # fmt: skip
    assert down.code == 3, down.stderr
    line = one_error(down.stderr.replace("si-ingest: aborted:", "si-ingest: error:"))
    assert "the last 10 rows never got a connection in 3 tries each" in line and "cannot be reached" in line
    summary = down.event("run.summary")  # none left: the summary had said "sent: 31 requests" (review h9b)
    assert summary["requests"] == summary["never_connected"] > 0
    counts = Counter(results_mod.read(out)["status"])
    # the tenth trips it; a row the other worker was finishing at that moment may end failed too
    assert 10 <= counts["failed"] <= 11 and counts["failed"] + counts["pending"] == 60 and counts["created"] == 0
    box = sandbox()
    up = run_cli(*run_args(box, [rows], out))
    assert up.code == 0 and box.stats()["requests"] == 60  # every row left to send goes once


def test_answers_that_came_while_the_process_was_stopped_are_read(sandbox, write_input, tmp_path):
    """Ctrl-Z then `fg`, `docker pause`, a frozen VM: the answers arrive while the process is
    stopped, and on resume the overdue deadlines fired before the sockets were read, so rows the
    API had created were `unknown` (READ_TIMEOUT)."""
    box = sandbox("--latency", "200-200")
    rows = write_input("a.csv", make_rows(12, seed=71))
    out = tmp_path / "r.csv"
    proc = cli_process(*run_args(box, [rows], out, "--read-timeout", "0.5", "--concurrency", "4", "--rate", "1000"))
    wait_for(lambda: box.stats()["requests"] >= 1, timeout=30, interval=0.005)
    proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(1.5)  # the answers to the requests in flight come meanwhile; their deadlines pass
    finally:
        proc.send_signal(signal.SIGCONT)
    _, stderr = proc.communicate(timeout=60)
    frame = results_mod.read(out)
    assert proc.returncode == 0 and set(frame["status"]) == {"created"}, stderr
    assert box.stats()["requests"] == 12


def test_a_full_disk_while_the_ledger_is_read_or_compacted_is_one_line_not_a_crash(
    sandbox, write_input, tmp_path, monkeypatch, capsys
):
    """polars' write of the journal's runs raised a ComputeError on ENOSPC (exit 4, "internal
    error ... please report it", a crash report), and the compaction's rewrite an OSError with no
    errno ("cannot write journal ...: None")."""
    import os

    import polars as pl

    from pipeline.ledger import reader, store

    box = sandbox()
    rows = write_input("a.csv", make_rows(5, seed=81))
    out = tmp_path / "r.csv"
    assert run_cli(*run_args(box, [rows], out)).code == 0

    def full(*args, **kwargs):
        raise pl.exceptions.ComputeError("underlying IO error: No space left on device (os error 28)")

    monkeypatch.setattr(reader, "write_run", full)
    assert _in_process(monkeypatch, tmp_path, run_args(box, [rows], out)) == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("si-ingest:")]
    assert line.startswith("si-ingest: error: cannot write work file") and "No space left on device" in line
    assert not list(tmp_path.glob("si-ingest-crash-*"))
    monkeypatch.undo()

    def lines_full(*args, **kwargs):
        raise OSError("No space left on device (os error 28)")  # as polars' write_csv raises it: no errno

    more = write_input("b.csv", make_rows(5, seed=82))
    monkeypatch.setattr(store.records, "outcome_lines", lines_full)  # the compaction's journal rewrite
    code = _in_process(monkeypatch, tmp_path, run_args(box, [more], out))
    monkeypatch.undo()
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("si-ingest:")]
    assert code == 2 and "cannot write journal" in line and "No space left on device (os error 28)" in line
    assert "a rerun goes on from it" in line and ": None" not in line
    again = run_cli(*run_args(box, [rows, more], out))
    assert again.code == 0 and box.stats()["requests"] == 10 and os.path.exists(out)  # nothing sent twice


def test_a_stderr_reader_that_stops_reading_neither_freezes_the_run_nor_its_sigterm(sandbox, write_input, tmp_path):
    """A stalled log shipper: once the pipe was full, the next log line blocked the event loop,
    sending stopped, and SIGTERM did nothing (its handler runs on that loop); only SIGKILL ended it."""
    import array
    import fcntl
    import os
    import subprocess
    import sys
    import termios

    box = sandbox()
    rows = write_input("a.csv", make_rows(60, seed=91))
    out = tmp_path / "r.csv"
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, 1031, 4096)  # F_SETPIPE_SZ: one page, full after a dozen progress lines
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZYNTRO_")} | CREDENTIAL_ENV
    argv = [*run_args(box, [rows], out, "--rate", "30", "--progress-every", "0.1", "--log-format", "json")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *argv], env=env, stdout=subprocess.DEVNULL, stderr=write_end
    )
    os.close(write_end)
    try:

        def pipe_full() -> bool:
            waiting = array.array("i", [0])
            fcntl.ioctl(read_end, termios.FIONREAD, waiting)
            return waiting[0] > 4096 - 1024  # no room for another line (each is written whole)

        wait_for(pipe_full, timeout=30)
        sent = box.stats()["requests"]
        wait_for(lambda: box.stats()["requests"] > sent + 5, timeout=10)  # still sending
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
        os.close(read_end)
    frame = results_mod.read(out)
    assert Counter(frame["status"])["created"] == len(box.created()) < 60
    assert set(frame["status"]) == {"created", "pending"}


def test_report_outputs_never_replace_an_input_the_results_or_the_ledger(sandbox, write_input, tmp_path):
    """--summary-json an input had replaced the export with JSON (after sending, exit 0);
    --report-html the journal made the next run refuse a damaged ledger; `report --errors` the
    original export replaced it with its error rows."""
    box = sandbox()
    rows = write_input("a.csv", make_rows(4, seed=95))
    out = tmp_path / "r.csv"
    export = rows.read_bytes()
    for flag, path in (("--summary-json", rows), ("--report-html", tmp_path / "r.csv.journal")):
        refused = run_cli(*run_args(box, [rows], out), flag, str(path))
        assert refused.code == 2 and flag in one_error(refused.stderr) and "overwritten" in refused.stderr
        assert box.stats()["requests"] == 0
    assert run_cli(*run_args(box, [rows], out), "--summary-json", str(tmp_path / "s.json")).code == 0
    assert rows.read_bytes() == export and (tmp_path / "s.json").exists()
    clobber = run_cli("report", str(out), "--errors", str(rows))
    assert clobber.code == 2 and "is not an error file si-ingest wrote" in clobber.stderr
    assert rows.read_bytes() == export
    assert run_cli("report", str(out), "--errors", str(tmp_path / "e.csv")).code == 0
    assert run_cli("report", str(out), "--errors", str(tmp_path / "e.csv")).code == 0  # its own: replaced


def test_a_summary_that_cannot_be_written_is_refused_at_start_or_not_claimed(
    sandbox, write_input, tmp_path, monkeypatch, capsys
):
    """--summary-json naming a folder had ended exit 0 with the path listed under `written:` (a
    monitor reading it saw last night's); `report --summary` without --html was ignored."""
    from pipeline import report

    box = sandbox()
    rows = write_input("a.csv", make_rows(3, seed=97))
    out = tmp_path / "r.csv"
    (tmp_path / "last-run.json").mkdir()
    refused = run_cli(*run_args(box, [rows], out), "--summary-json", str(tmp_path / "last-run.json"))
    assert refused.code == 2 and "cannot be written" in one_error(refused.stderr) and box.stats()["requests"] == 0

    def unwritable(document, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_document", unwritable)
    assert _in_process(monkeypatch, tmp_path, [*run_args(box, [rows], out), "--summary-json", "s.json"]) == 0
    captured = capsys.readouterr()
    assert "written: " in captured.out and "s.json" not in captured.out.splitlines()[-1]
    assert "s.json could not be written" in captured.err
    monkeypatch.undo()
    lone = run_cli("report", str(out), "--summary", str(tmp_path / "nowhere.json"))
    assert lone.code == 2 and "add --html" in lone.stderr


async def test_a_library_callers_own_signal_handlers_survive_a_run(sandbox, write_input, tmp_path):
    """A host (an Airflow worker) that handles SIGHUP and SIGTERM on its own loop: the run had
    replaced its handlers and then removed them, leaving those signals doing nothing at all."""
    import asyncio
    import os

    import pipeline

    box = sandbox()
    rows = write_input("a.csv", make_rows(5, seed=99))
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    for signum in (signal.SIGHUP, signal.SIGTERM):
        loop.add_signal_handler(signum, seen.append, signal.Signals(signum).name)
    try:
        overrides = {"run.results": tmp_path / "r.csv", "api.base_url": box.url, "run.rate": 500}
        config = pipeline.load_config(None, overrides, env=CREDENTIAL_ENV)
        result = await pipeline.run([rows], config, pipeline.load_credentials(config, env=CREDENTIAL_ENV))
        assert result.exit_code == 0 and len(box.created()) == 5
        for signum in (signal.SIGHUP, signal.SIGTERM):
            os.kill(os.getpid(), signum)
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(seen) == ["SIGHUP", "SIGTERM"]
    finally:
        for signum in (signal.SIGHUP, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def test_a_report_path_the_tool_wrote_is_replaced_whatever_its_name(tmp_path):
    """`--summary-json /var/lib/si/last-run` (no .json) was written on night 1 and refused on night 2;
    an export under such a name is still protected, and the two reports may not share a file."""
    from pipeline import runner
    from pipeline.config import load_config
    from pipeline.errors import ConfigError

    results = tmp_path / "r.csv"
    summary = tmp_path / "last-run"
    summary.write_text('{"schema_version": 1, "command": "run"}')
    runner.check_output("--summary-json", summary, (".json",), [], results)  # its own: fine
    html = tmp_path / "report"
    html.write_text("<!DOCTYPE html><html></html>")
    runner.check_output("--report-html", html, (".html", ".htm"), [], results)
    export = tmp_path / "contacts"
    export.write_text("org_id,contact_id\n")
    with pytest.raises(ConfigError, match=r"exists and is not a \.json file"):
        runner.check_output("--summary-json", export, (".json",), [], results)
    both = load_config(None, {"run.results": results, "run.summary_json": summary, "run.report_html": summary}, env={})
    with pytest.raises(ConfigError, match="both name"):
        runner._check_reports(both, [])


def test_a_signal_while_the_reports_are_written_still_writes_them(sandbox, write_input, tmp_path, monkeypatch, capfd):
    """After the results, the summary JSON and HTML report were written under the default handler:
    a SIGTERM there exited 130 without them, leaving last night's summary for the monitor. Then
    it exited 0, as if not interrupted (found by a review, h9a): 130, with the reports written."""
    from pipeline import report

    box = sandbox()
    rows = write_input("a.csv", make_rows(4, seed=98))
    seen: list[str] = []
    _signalling(monkeypatch, report, "write_document", 1, seen)
    once = report.write_document  # the signal as the first write starts; the rewrite goes through
    monkeypatch.setattr(report, "write_document", lambda *a: (once if not seen else _real_write)(*a))
    code = _in_process(monkeypatch, tmp_path, [*run_args(box, [rows], tmp_path / "r.csv"), "--summary-json", "s.json"])
    assert seen == ["write_document"] and code == 130 and (tmp_path / "s.json").exists()
    written = json.loads((tmp_path / "s.json").read_text())  # it had said 0, not interrupted (review h10)
    assert written["exit_code"] == 130 and written["interrupted"] is True
    assert "si-ingest: SIGTERM: every request has finished" in capfd.readouterr().err


def test_a_signal_between_the_results_and_the_reports_still_writes_them(
    sandbox, write_input, tmp_path, monkeypatch, capfd
):
    """Between the run's two signal blocks the default handler was back: a SIGTERM as the summary
    was made exited 130 with no summary JSON (found by a review, h9a). One block spans the run."""
    from pipeline import report

    box = sandbox()
    rows = write_input("a.csv", make_rows(4, seed=99))
    seen: list[str] = []
    _signalling(monkeypatch, report, "run_document", 1, seen)
    code = _in_process(monkeypatch, tmp_path, [*run_args(box, [rows], tmp_path / "r.csv"), "--summary-json", "s.json"])
    assert seen == ["run_document"] and code == 130 and (tmp_path / "s.json").exists()


def test_two_sigterms_as_the_run_ends_never_kill_it_by_the_signal(sandbox, write_input, tmp_path):
    """A supervisor escalating (two SIGTERMs 20 ms apart) just after the summary: the interpreter,
    shutting down, had put the default action back and died by the signal (exit 143 / -15 in 20
    of 20 tries), or printed a KeyboardInterrupt traceback (found by a review, h7c)."""
    box = sandbox()
    codes = []
    for trial in range(2):
        rows = write_input(f"a{trial}.csv", make_rows(300, seed=60 + trial))
        out = tmp_path / f"r{trial}.csv"
        proc = cli_process("run", str(rows), "--base-url", box.url, "--results", str(out), "--rate", "3000",
                           "--concurrency", "16", "--log-format", "json")  # fmt: skip
        assert proc.stderr is not None
        while (line := proc.stderr.readline()) and '"run.summary"' not in line:
            pass
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert "Traceback" not in stderr, stderr
        codes.append(proc.returncode)
        assert results_mod.read(out).height == 300
    assert set(codes) <= {0, 130}, codes


@pytest.mark.parametrize("ends", ["validate", "account error"])
def test_a_signal_stops_a_finished_run_blocked_writing_its_summary(sandbox, write_input, tmp_path, ends):
    """stdout a full pipe nobody reads: once the run's work was done a signal was only noted, and
    the process, blocked printing its summary, could be stopped by SIGKILL alone (found by a
    review, h8a). It exits within the grace: 130 where the run itself had ended 0 or 1, and its
    own code where that tells more (an account error's 3 had become 130: left open by session 7)."""
    import fcntl
    import os
    import subprocess
    import sys

    rows = write_input("a.csv", make_rows(3))
    out = tmp_path / "r.csv"
    argv, env = ["validate", str(rows), "--results", str(out)], CREDENTIAL_ENV
    if ends == "account error":
        argv = ["run", str(rows), "--results", str(out), "--base-url", sandbox().url]
        env = CREDENTIAL_ENV | {"ZYNTRO_API_KEY": "not-the-key"}
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETFL, fcntl.fcntl(write_end, fcntl.F_GETFL) | os.O_NONBLOCK)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"x" * 4096)
    fcntl.fcntl(write_end, fcntl.F_SETFL, fcntl.fcntl(write_end, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZYNTRO_")} | env
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *argv],
                            stdout=write_end, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    os.close(write_end)
    try:
        wait_for(out.exists, timeout=30)
        time.sleep(1.0)  # in print() by now
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == (130 if ends == "validate" else 3)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(read_end)


def test_a_signal_is_named_even_when_its_keyboardinterrupt_comes_back_bare():
    """A SIGHUP while polars imported was reported as "interrupted by SIGINT" (seen once in the
    suite): the KeyboardInterrupt raised for it came back without its argument."""
    from pipeline import entry

    with pytest.raises(KeyboardInterrupt) as raised:
        entry._interrupt(signal.SIGHUP, None)
    assert entry.signal_name(raised.value) == "SIGHUP"
    assert entry.signal_name(KeyboardInterrupt()) == "SIGHUP"  # bare: the last one raised
    assert entry.signal_name(KeyboardInterrupt("SIGTERM")) == "SIGTERM"
