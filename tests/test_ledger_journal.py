"""The journal writer and the run lock at their edges: files that cannot be opened, moved, or closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import LedgerError
from pipeline.ledger import Journal, Ledger, RunLock, reader, replay
from pipeline.models import Outcome, Status


def open_ledger(tmp_path: Path) -> Ledger:
    (tmp_path / "work").mkdir(exist_ok=True)
    return Ledger.open(tmp_path / "r.csv", tmp_path / "work", writable=True)


def test_a_journal_that_cannot_be_opened_raises_ledger_error(tmp_path: Path):
    journal = Journal(tmp_path / "gone" / "r.csv.journal", fsync=False, next_seq=1)
    with pytest.raises(LedgerError, match=r"cannot write journal .*No such file or directory"):
        journal.open()


async def test_sequence_numbers_continue_from_the_ledger(tmp_path: Path):
    ledger = open_ledger(tmp_path)
    journal = ledger.journal(fsync=False)
    assert journal.next_seq == 1  # after the header
    await journal.intent("a", 1)
    journal.outcome(Outcome("a", Status.CREATED, sir_id=1, attempts=1))
    assert journal.next_seq == 3 and journal.records == 2
    journal.close()
    again = Ledger.open(tmp_path / "r.csv", tmp_path / "work", writable=True).journal(fsync=False)
    assert again.next_seq == 3
    await again.intent("b", 1)
    again.close()
    assert replay(ledger.paths.journal)[1] == ["b"]  # numbered 3: read back in sequence


async def test_a_journal_moved_away_after_its_last_write_is_noticed_at_the_end(tmp_path: Path):
    ledger = open_ledger(tmp_path)
    journal = ledger.journal(fsync=False)
    await journal.intent("a", 1)
    journal.outcome(Outcome("a", Status.CREATED, sir_id=5, attempts=1))
    journal.flush()
    moved = tmp_path / "moved.journal"
    ledger.paths.journal.rename(moved)
    saved = ledger.finish(journal)  # nothing more to write: only the end-of-run check can see it
    assert saved is not None and journal.lost
    assert not ledger.paths.journal.exists()  # nothing written where it used to be
    rows = ledger.view.partition(0, 2**64 - 1)
    assert dict(zip(rows["row_key"], rows["sir_id"], strict=True)) == {"a": 5}
    info = reader.inspect(saved)
    assert info is not None and info.ledger_id == ledger.found.ledger_id
    [records] = list(reader.records_of(info))
    assert records["row_key"].to_list() == ["a", "a"] and records["sir_id"].to_list() == [None, 5]
    with pytest.raises(LedgerError, match="is closed"):
        journal.copy_to(tmp_path / "again")


def test_a_lock_file_that_cannot_be_created_raises_ledger_error(tmp_path: Path):
    with pytest.raises(LedgerError, match="cannot create lock file"):
        RunLock(tmp_path / "gone" / "r.csv").acquire()
    lock = RunLock(tmp_path / "r.csv")
    lock.release()  # releasing a lock never taken is harmless
    with lock:
        pass
    with RunLock(tmp_path / "r.csv"):  # and it was released on leaving the block
        pass


@pytest.mark.parametrize("change", ["truncated", "written over"])
async def test_a_journal_changed_in_place_stops_commits_and_its_records_are_kept_whole(tmp_path: Path, change):
    """Same device, inode and links (logrotate's copytruncate, `cp backup live`): the identity
    check passed and the run went on sending (found by a review, h7c). The run's own copy keeps
    every record it wrote for `copy_to`."""
    import os

    ledger = open_ledger(tmp_path)
    journal = ledger.journal(fsync=False)
    await journal.intent("a", 1)
    journal.outcome(Outcome("a", Status.CREATED, sir_id=1, attempts=1))
    await journal.intent("b", 1)
    whole = ledger.paths.journal.read_bytes()
    if change == "truncated":
        os.truncate(ledger.paths.journal, 0)
    else:
        ledger.paths.journal.write_bytes(whole[: len(whole) // 2])  # an older copy, in place
    with pytest.raises(LedgerError, match=r"changed in place \(truncated or written over\)"):
        await journal.intent("c", 1)
    assert journal.lost
    journal.copy_to(tmp_path / "saved")
    saved = (tmp_path / "saved").read_bytes()
    assert saved.startswith(whole) and reader.inspect(tmp_path / "saved") is not None
    journal.close()
    assert not (tmp_path / "work" / "journal.own").exists()


def test_a_second_run_is_refused_before_any_journal_exists_though_the_lock_file_was_removed(tmp_path: Path):
    """A first night: no journal yet while the first run plans. With the lock file removed in
    that window, a second run took a new one and both sent every row (found by a review, h8a).
    The first run's work folder is held from its start."""
    from pipeline.errors import LockError

    first = RunLock(tmp_path / "r.csv")
    first.acquire()
    work = first.make_workdir()
    (work / "input-000000.parquet").write_bytes(b"the first run's")
    (tmp_path / "r.csv.lock").unlink()
    second = RunLock(tmp_path / "r.csv")
    second.acquire()  # a new lock file: nothing to see there
    with pytest.raises(LockError, match=r"another si-ingest run is working in r\.csv\.work"):
        second.make_workdir()
    assert (work / "input-000000.parquet").exists()  # the first run's files untouched
    first.release()
    with RunLock(tmp_path / "r.csv") as third:
        assert list(third.make_workdir().iterdir()) == []  # a killed run's leftovers are cleared


async def test_a_killed_runs_own_copy_is_kept_when_the_journal_lost_records(tmp_path: Path):
    """Truncated in place, then the run killed before it noticed: the next run emptied the work
    folder, the run's own copy with it, and the rows were sent again (found by a review, h9a)."""
    import os

    from pipeline.errors import SavedRecords

    lock = RunLock(tmp_path / "r.csv")
    lock.acquire()
    work = lock.make_workdir()
    ledger = Ledger.open(tmp_path / "r.csv", work, writable=True)
    journal = ledger.journal(fsync=False)
    await journal.intent("a", 1)
    journal.outcome(Outcome("a", Status.CREATED, sir_id=1, attempts=1))
    await journal.intent("b", 1)
    os.truncate(ledger.paths.journal, 0)  # logrotate's copytruncate; then kill -9: nothing more runs
    lock.release()
    with RunLock(tmp_path / "r.csv") as again:
        again.make_workdir()
        (saved,) = ledger.paths.saved_records()
        with pytest.raises(SavedRecords):
            Ledger.open(tmp_path / "r.csv", tmp_path / "r.csv.work", writable=False)
    assert b'"k":"a","s":"created"' in saved.read_bytes()


async def test_a_killed_runs_own_copy_is_dropped_when_the_journal_holds_it_all(tmp_path: Path):
    lock = RunLock(tmp_path / "r.csv")
    lock.acquire()
    ledger = Ledger.open(tmp_path / "r.csv", lock.make_workdir(), writable=True)
    journal = ledger.journal(fsync=False)
    await journal.intent("a", 1)
    lock.release()  # kill -9: the journal holds every byte of the copy, and more
    with RunLock(tmp_path / "r.csv") as again:
        assert list(again.make_workdir().iterdir()) == [] and ledger.paths.saved_records() == []


def test_a_symlinked_work_folder_is_refused(tmp_path: Path):
    """Followed, emptied, and never removed (rmtree refuses links): every run left its input rows
    in the link's target (found by a review, h9a)."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "r.csv.work").symlink_to(tmp_path / "elsewhere")
    with RunLock(tmp_path / "r.csv") as lock, pytest.raises(LedgerError, match="is a symbolic link"):
        lock.make_workdir()


def test_a_journal_whose_own_copy_cannot_be_kept_sends_nothing(tmp_path: Path):
    """The copy is what saves a run's records from a journal changed in place: without it the
    records were claimed saved from the truncated journal (found by a review, h9a)."""
    ledger = open_ledger(tmp_path)
    journal = Journal(ledger.paths.journal, fsync=False, next_seq=1, own_copy=tmp_path / "gone" / "journal.own")
    with pytest.raises(LedgerError, match="cannot keep the run's copy of the journal"):
        journal.open()
