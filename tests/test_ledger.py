import asyncio
import os
from pathlib import Path

import pytest

from pipeline.errors import LedgerError, LockError
from pipeline.ledger import Journal, RunLock, compact, replay
from pipeline.models import Outcome, Status


async def test_group_commit_writes_many_intents_at_once(tmp_path: Path):
    path = tmp_path / "r.csv.journal"
    journal = Journal(path, fsync=True)
    journal.open(0)
    before = journal.writes
    await asyncio.gather(*(journal.intent(f"k{i}") for i in range(50)))
    assert journal.writes == before + 1
    journal.outcome(Outcome("k1", Status.CREATED, sir_id=7, attempts=1, http_status=200))
    journal.close()
    state, in_flight, _ = replay(path)
    assert len(in_flight) == 49 and "k1" not in in_flight
    assert state.row(0, named=True)["sir_id"] == 7


def test_torn_last_line_is_ignored_and_cut(tmp_path: Path):
    path = tmp_path / "j"
    path.write_bytes(
        b'{"journal":"si-ingest","version":1}\n{"k":"a","s":"created","n":1,"id":5}\n{"i":"b"}\n{"k":"b","s":"cre'
    )
    state, in_flight, valid = replay(path)
    assert state["row_key"].to_list() == ["a"] and in_flight == ["b"]
    journal = Journal(path, fsync=False)
    journal.open(valid)
    journal.close()
    assert path.read_bytes().endswith(b'{"i":"b"}\n')


def test_last_record_wins(tmp_path: Path):
    path = tmp_path / "j"
    path.write_bytes(
        b'{"i":"a"}\n{"k":"a","s":"failed","n":1,"c":"HTTP_503"}\n{"i":"a"}\n{"k":"a","s":"created","n":2,"id":9}\n'
    )
    state, in_flight, _ = replay(path)
    assert in_flight == [] and state.row(0, named=True)["status"] == "created"


async def test_unwritable_journal_stops_sending(tmp_path: Path):
    path = tmp_path / "j"
    journal = Journal(path, fsync=False)
    journal.open(0)
    os.close(journal._fd)
    journal._fd = os.open(os.devnull, os.O_RDONLY)  # every write now fails (EBADF)
    with pytest.raises(LedgerError):
        await journal.intent("k")
    with pytest.raises(LedgerError):
        await journal.intent("k2")


def test_compact_keeps_one_record_per_key(tmp_path: Path):
    path = tmp_path / "j"
    lines = [b'{"i":"a"}\n', b'{"k":"a","s":"failed","n":1}\n'] * 10 + [
        b'{"k":"a","s":"created","n":11,"id":3,"t":"2026-01-01T00:00:00Z"}\n'
    ]
    path.write_bytes(b"".join(lines))
    state, _, _ = replay(path)
    compact(path, state)
    after, in_flight, _ = replay(path)
    assert after.to_dicts() == state.to_dicts() and not in_flight
    assert len(path.read_bytes().splitlines()) == 2


def test_lock_is_exclusive_and_names_the_holder(tmp_path: Path):
    results = tmp_path / "r.csv"
    with RunLock(results):
        with pytest.raises(LockError) as info:
            RunLock(results).acquire()
        assert f"pid {os.getpid()}" in str(info.value)
    RunLock(results).acquire()  # released: free again


def test_stale_lock_file_is_taken_over(tmp_path: Path):
    results = tmp_path / "r.csv"
    (tmp_path / "r.csv.lock").write_text("pid 999999 on gone-host, started 2020-01-01T00:00:00Z")
    lock = RunLock(results)
    lock.acquire()
    assert f"pid {os.getpid()}" in (tmp_path / "r.csv.lock").read_text()
    lock.release()
