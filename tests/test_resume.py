"""Crash safety with real processes and the real sandbox: kill -9, drops, signals, locks, full disks."""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from pipeline import results as results_mod
from pipeline.ledger import compact, journal_path, replay

from .conftest import CREDENTIAL_ENV, make_rows, run_cli, wait_for


def cli_process(*args: str, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZYNTRO_")} | CREDENTIAL_ENV
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def sending(box, rows: Path, out: Path, *extra: str, created: int = 20) -> subprocess.Popen:
    """A run of `rows` into `out` in the background, once the sandbox has created `created` rows."""
    proc = cli_process(*run_args(box, [rows], out, *extra))
    wait_for(lambda: box.stats()["created"] >= created, timeout=30)
    return proc


def run_args(box, inputs: list[Path], out: Path, *extra: str) -> list[str]:
    return ["run", *map(str, inputs), "--base-url", box.url, "--results", str(out), *extra]


def check_against_server(box, out: Path, n_rows: int) -> Counter:
    """The issue's invariants, read from the sandbox's own record."""
    frame = results_mod.read(out)
    created = box.created()
    per_contact = Counter(r["contact_id"] for r in created)
    assert [c for c, k in per_contact.items() if k > 1] == [], "a row was created twice"
    assert frame.height == n_rows
    status = dict(zip(frame["contact_id"], frame["status"], strict=True))
    sir_ids = dict(zip(frame["contact_id"], frame["sir_id"], strict=True))
    server = {r["contact_id"]: r["sir_id"] for r in created}
    for contact, st in status.items():
        if st == "created":
            assert server.get(contact) == sir_ids[contact], "a created row has no matching server record"
    for contact in server:
        assert status[contact] in ("created", "unknown"), f"server record for a {status[contact]} row"
    return Counter(frame["status"])


def test_kill_9_at_random_moments_then_resume(sandbox, write_input, tmp_path):
    n, kills, concurrency = 600, 5, 8
    box = sandbox("--latency", "5-30", "--seed", "11")
    rows = write_input("a.csv", make_rows(n, seed=11))
    out = tmp_path / "r.csv"
    rng = random.Random(20261126)
    args = run_args(box, [rows], out, "--rate", "400", "--concurrency", str(concurrency))
    for _ in range(kills):
        before = box.stats()["created"]
        proc = cli_process(*args)
        # kill once requests are flowing (or the run ended), at a random moment after
        wait_for(
            lambda before=before, proc=proc: box.stats()["created"] > before or proc.poll() is not None, timeout=30
        )
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.wait()
        proc.stderr.close()
    final = run_cli(*args)
    assert final.code in (0, 1), final.stderr
    counts = check_against_server(box, out, n)
    assert counts["created"] + counts["unknown"] == n
    assert counts["unknown"] <= kills * concurrency
    again = run_cli(*args)
    assert again.code == final.code and len(box.created()) == counts["created"] + counts[
        "unknown"
    ] - _unknown_not_created(box, out)


def _unknown_not_created(box, out: Path) -> int:
    frame = results_mod.read(out)
    server = {r["contact_id"] for r in box.created()}
    return sum(
        1 for c, s in zip(frame["contact_id"], frame["status"], strict=True) if s == "unknown" and c not in server
    )


def test_dropped_connections_never_duplicate(sandbox, write_input, tmp_path):
    n = 300
    box = sandbox("--drop-before", "0.05", "--drop-after", "0.05", "--latency", "1-5", "--seed", "3")
    rows = write_input("a.csv", make_rows(n, seed=3))
    out = tmp_path / "r.csv"
    args = run_args(box, [rows], out, "--rate", "500", "--concurrency", "16")
    first = run_cli(*args)
    assert first.code == 1
    counts = check_against_server(box, out, n)
    assert counts["unknown"] > 0 and counts["created"] + counts["unknown"] == n
    assert run_cli(*args).code == 1
    assert check_against_server(box, out, n) == counts  # rerun without --resend-unknown sends nothing
    resend = run_cli(*args, "--resend-unknown")
    assert resend.code in (0, 1)
    # resending unknown rows is the user's explicit choice: rows dropped after processing now exist twice
    frame = results_mod.read(out)
    assert (frame["status"] == "unknown").sum() < counts["unknown"]


def terminate(proc: subprocess.Popen, out: Path, signals: int, signum: int = signal.SIGTERM) -> None:
    """`signum` `signals` times; the run must exit 130 leaving no row in flight in its journal."""
    for i in range(signals):
        if i:
            time.sleep(0.2)
        proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    _, in_flight, _ = replay(journal_path(out))
    assert in_flight == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_finishes_in_flight_and_exits_130(sandbox, write_input, tmp_path, signum):
    """SIGINT (Ctrl-C) had been left to asyncio's runner, which cancelled the run: exit 130 with
    every request in flight `unknown` (the server had created none of them) and no results
    file written; found by a review (h7c)."""
    n = 400
    box = sandbox("--latency", "50-150")
    rows = write_input("a.csv", make_rows(n, seed=5))
    out = tmp_path / "r.csv"
    proc = sending(box, rows, out, "--rate", "100", "--concurrency", "16")
    terminate(proc, out, signals=1, signum=signum)
    assert results_mod.read(out).height == n  # the results are written
    counts = check_against_server(box, out, n)
    assert counts["unknown"] == 0 and counts["pending"] > 0
    assert counts["created"] == len(box.created())
    final = run_cli(*run_args(box, [rows], out, "--rate", "500", "--concurrency", "16"))
    assert final.code == 0 and len(box.created()) == n


def test_second_run_on_same_results_is_refused_and_stale_lock_taken_over(sandbox, write_input, tmp_path):
    box = sandbox("--latency", "100-100")
    rows = write_input("a.csv", make_rows(200))
    out = tmp_path / "r.csv"
    proc = cli_process(*run_args(box, [rows], out, "--rate", "20", "--concurrency", "2"))
    wait_for(lambda: box.stats()["requests"] > 0, timeout=30)
    second = run_cli(*run_args(box, [rows], out))
    assert second.code == 2 and f"pid {proc.pid}" in second.stderr
    proc.kill()
    proc.wait()
    proc.stderr.close()
    # the killed run's lock file remains, but holds no lock: the next run takes it over
    assert (tmp_path / "r.csv.lock").exists()
    third = run_cli(*run_args(box, [rows], out, "--rate", "500", "--concurrency", "16"))
    assert third.code in (0, 1), third.stderr
    check_against_server(box, out, 200)


def test_results_path_gone_exits_2_and_sends_nothing(sandbox, write_input, tmp_path):
    box = sandbox()
    rows = write_input("a.csv", make_rows(5))
    result = run_cli(*run_args(box, [rows], tmp_path / "gone" / "r.csv"))
    assert result.code == 2 and "does not exist" in result.stderr
    assert box.stats()["requests"] == 0


FILE_LIMIT = 1_000_000


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def test_journal_write_failure_stops_sending(sandbox, write_input, tmp_path):
    """A full disk, simulated with RLIMIT_FSIZE: writes past 1 MB fail with EFBIG (works as root)."""
    n = 12_000
    box = sandbox()
    rows = write_input("a.csv", make_rows(n))
    out = tmp_path / "r.csv"
    config = tmp_path / "small-chunks.toml"
    config.write_text("[input]\nchunk_rows = 1000\n")
    args = run_args(box, [rows], out, "--rate", "5000", "--concurrency", "16", "--config", str(config))
    proc = cli_process(*args, preexec_fn=_limit_file_size)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    assert "cannot write journal" in stderr and "Traceback" not in stderr
    sent = box.stats()["requests"]
    assert 0 < sent < n
    # every request that reached the server had its intent in the journal first
    state, in_flight, _ = replay(journal_path(out))
    recorded = set(in_flight) | set(state["row_key"])
    assert len(recorded) >= sent


def test_changed_inputs_resume_by_row_key(sandbox, write_input, tmp_path):
    box = sandbox()
    rows = pl.DataFrame(make_rows(60, seed=8))
    out = tmp_path / "r.csv"
    first = run_cli(*run_args(box, [write_input("a.csv", rows.head(40))], out, "--rate", "500"))
    assert first.code == 0
    reexport = rows.sample(fraction=1.0, shuffle=True, seed=1)  # re-sorted, with 20 rows appended
    parts = [write_input("p1.csv", reexport.head(30)), write_input("p2.parquet", reexport.tail(30))]
    second = run_cli(*run_args(box, parts, out, "--rate", "500"))
    assert second.code == 0
    assert box.stats()["requests"] == 60 and len(box.created()) == 60
    assert results_mod.read(out).height == 60


def test_kill_during_compaction_loses_nothing(tmp_path):
    path = tmp_path / "r.csv.journal"
    lines = [b'{"journal":"si-ingest","version":1}\n']
    for i in range(150_000):
        lines.append(b'{"i":"k%d"}\n{"k":"k%d","s":"created","n":1,"id":%d,"t":"2026-01-01T00:00:00Z"}\n' % (i, i, i))
    path.write_bytes(b"".join(lines))
    before, _, _ = replay(path)
    script = (
        "from pathlib import Path; from pipeline.ledger import compact, replay;"
        f" p = Path({str(path)!r}); compact(p, replay(p)[0])"
    )
    rng = random.Random(7)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", script])
        wait_for(
            lambda proc=proc: path.with_name(path.name + ".compact").exists() or proc.poll() is not None, timeout=30
        )
        time.sleep(rng.uniform(0, 0.05))
        proc.kill()
        proc.wait()
        after, in_flight, _ = replay(path)
        assert in_flight == []
        assert after.select("row_key", "status", "sir_id").equals(before.select("row_key", "status", "sir_id"))
    compact(path, before)
    assert replay(path)[0].height == 150_000


def test_second_signal_stops_at_once_with_a_consistent_journal(sandbox, write_input, tmp_path):
    n = 300
    box = sandbox("--latency", "1000-1500")
    rows = write_input("a.csv", make_rows(n, seed=6))
    out = tmp_path / "r.csv"
    proc = cli_process(*run_args(box, [rows], out, "--rate", "200", "--concurrency", "16"))
    wait_for(lambda: box.stats()["requests"] >= 16, timeout=30)
    terminate(proc, out, signals=2)
    frame = results_mod.read(out)
    unknown = frame.filter(pl.col("status") == "unknown")
    assert 0 < unknown.height <= 16 and set(unknown["error_code"]) == {"INTERRUPTED"}
    time.sleep(1.6)  # let the sandbox finish the requests it was sent
    check_against_server(box, out, n)


def test_temp_files_of_a_killed_run_are_cleaned(sandbox, write_input, tmp_path):
    box = sandbox()
    out = tmp_path / "r.csv"
    (tmp_path / ".r.csv.99999.tmp").write_text("half a results file")
    (tmp_path / "r.csv.work").mkdir()
    (tmp_path / "r.csv.work" / "plan-000000.arrow").write_text("stale")
    result = run_cli(*run_args(box, [write_input("a.csv", make_rows(3))], out))
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("r.csv", ".r.csv"))) == [
        "r.csv",
        "r.csv.journal",
        "r.csv.lock",
    ]
