"""The results file against its ledger (ledger/seal.py): rows it shows sent must not be sendable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import LedgerDamaged
from pipeline.ledger import Ledger, LedgerPaths, seal
from pipeline.ledger.records import header, outcome
from pipeline.models import Outcome, Status

from .test_ledger_check import created, write_results


def _open(tmp_path: Path, *records: bytes) -> Ledger:
    paths = LedgerPaths(tmp_path / "r.csv")
    paths.journal.write_bytes(header(0, "L", None) + b"".join(records))
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Ledger.open(paths.results, work, writable=False)


def test_created_rows_must_stay_created_or_unknown_and_unknown_ones_known(tmp_path: Path):
    pending = Outcome("k2", Status.PENDING, attempts=0)
    ledger = _open(tmp_path, outcome(1, created("k1", 1)), outcome(2, pending), outcome(3, created("k3", 3)))
    paths = ledger.paths
    write_results(paths.results, {"k1": "created", "k3": "unknown", "k4": "pending", "k5": "invalid"})
    seal.cross_check(paths, ledger.view, tmp_path / "work")  # k3 unknown there, created here: fine
    write_results(paths.results, {"k1": "created", "k2": "created"})
    with pytest.raises(LedgerDamaged, match=r"1 row\(s\) .* sendable in it \(row_key 'k2' first\)"):
        seal.cross_check(paths, ledger.view, tmp_path / "work")
    write_results(paths.results, {"k1": "created", "k9": "unknown"})
    with pytest.raises(LedgerDamaged, match="row_key 'k9'"):
        seal.cross_check(paths, ledger.view, tmp_path / "work")
    assert list((tmp_path / "work").glob("sealcheck-*")) == []  # its runs are removed either way


def test_a_seal_holds_only_for_the_files_as_they_were(tmp_path: Path):
    ledger = _open(tmp_path, outcome(1, created("k1", 1)))
    paths = ledger.paths
    write_results(paths.results, {"k1": "created"})
    line = seal.seal_line(paths, 1)
    assert seal.holds(f"pid 1 on host\n{line}\n", paths)
    assert not seal.holds("pid 1 on host", paths) and not seal.holds("seal {not json", paths)
    paths.journal.write_bytes(paths.journal.read_bytes() + outcome(2, created("k2", 2)))
    assert not seal.holds(line, paths)


def test_an_unknown_row_needs_a_later_try_to_be_anything_but_unknown_or_created(tmp_path: Path):
    """An older copy of the journal saying `failed` for a row the results file shows `unknown`
    would have it sent again; a --resend-unknown try since (more attempts) is fine."""
    failed = Outcome("k1", Status.FAILED, error_code="HTTP_503", attempts=1)
    ledger = _open(tmp_path, outcome(1, failed))
    paths = ledger.paths
    write_results(paths.results, {"k1": "unknown"}, attempts="1")
    with pytest.raises(LedgerDamaged, match="row_key 'k1'"):
        seal.cross_check(paths, ledger.view, tmp_path / "work")
    ledger = _open(tmp_path, outcome(1, Outcome("k1", Status.FAILED, error_code="HTTP_503", attempts=2)))
    seal.cross_check(ledger.paths, ledger.view, tmp_path / "work")  # tried again since: its own outcome


def test_a_start_over_mark_holds_while_the_results_file_it_disregards_is_unchanged(tmp_path: Path):
    ledger = _open(tmp_path, outcome(1, created("k1", 1)))
    paths = ledger.paths
    write_results(paths.results, {"k9": "created"})
    mark = seal.over_line(paths)
    assert seal.started_over(f"pid 1\n{mark}\n", paths) == mark and seal.started_over("pid 1", paths) is None
    write_results(paths.results, {"k1": "created"})  # a run rendered its own results since
    assert seal.started_over(f"pid 1\n{mark}\n", paths) is None


def test_taking_the_lock_never_leaves_the_key_count_out(tmp_path: Path, monkeypatch):
    """The lock file was emptied when a run took it and the count written back later: a kill (or a
    signal) in between lost it, and a journal restored from an older copy then went unnoticed."""
    import os

    from pipeline.ledger import RunLock

    results = tmp_path / "r.csv"
    (tmp_path / "r.csv.lock").write_text(f"pid 1 on host\n{seal.floor_line(50)}\n")
    writes: list[bytes] = []
    real = os.pwrite

    def watched(fd: int, data: bytes, offset: int) -> int:
        writes.append(data)
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", watched)
    with RunLock(results) as lock:
        assert seal.floor(lock.previous) == 50
        assert all(b"floor " in data for data in writes)  # every state the file went through has it
        assert seal.floor((tmp_path / "r.csv.lock").read_text()) == 50


def test_the_lock_file_is_made_durable_each_time_it_is_written(tmp_path: Path, monkeypatch):
    """Left alone last session: the key count in the lock file was never fsynced, so a power cut
    could take it back to an older count (or, on ext4's delayed allocation, to an empty file)
    while the journal's fsynced records stayed: the guard against a journal restored from an
    older copy was gone without a sign."""
    import os

    from pipeline.ledger.lock import RunLock

    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    with RunLock(tmp_path / "r.csv") as lock:
        fd = lock._fd
        assert synced.count(fd) == 1  # taken over: the count carried is on the disk
        lock.seal(seal.floor_line(7))
        assert synced.count(fd) == 2


def test_a_lock_file_that_cannot_be_written_stops_the_run_with_a_reason(tmp_path: Path, monkeypatch):
    import errno
    import os

    from pipeline.errors import LedgerError
    from pipeline.ledger.lock import RunLock

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    lock = RunLock(tmp_path / "r.csv")
    with pytest.raises(LedgerError, match=r"cannot write lock file .*No space left"):
        lock.acquire()
    assert lock._fd is None  # released: the next run can take it
