"""One run per results file: an flock on `<results>.lock`, released by the kernel on any exit.

A lock file left by a killed process holds no flock, so the next run simply takes it over.

The work folder and the journal are flocked too (`make_workdir`, `hold_journal`), for as long
as the run holds the lock: a lock file removed while a run sends (`rm -f *.lock` in a wrapper,
or by hand after "another si-ingest run is using...") had let a second run take a new one and
send from the same ledger, and a review (h7c) saw 1,649 of 2,000 contacts created twice. The
second run now finds the work folder held (it exists from the first run's start, before any
journal does: a review of the first fix found both runs of a first night sending every row).
Those two locks are the lock file's backup, so where the file system cannot flock them (NFS
without write access to the file) the run goes on with the lock file alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path

from ..errors import LedgerError, LockError, reason_of
from .journal import OWN_COPY
from .snapshot import fsync_dir
from .store import LedgerPaths


class RunLock:
    def __init__(self, results: Path) -> None:
        self.path = LedgerPaths(results).lock
        self._fd: int | None = None
        self._journal_fd: int | None = None
        self._workdir_fd: int | None = None
        self._paths = LedgerPaths(results)
        self._journal = self._paths.journal
        self._holder = ""
        self.previous = ""  # what the lock file held before this run took it over

    def acquire(self) -> None:
        self._paths.refuse_odd_files()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LedgerError(f"cannot create lock file {self.path}: {reason_of(exc)}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = (_read_all(fd, 200).strip().splitlines() or ["unknown process"])[0]
            os.close(fd)
            raise LockError(
                f"another si-ingest run ({holder}) is using {self.path.name[:-5]}; wait for it to finish"
            ) from None
        self._fd = fd
        self.hold_journal()
        self.previous = _read_all(fd)  # the last run's seal, if it finished (seal.py)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._holder = f"pid {os.getpid()} on {socket.gethostname()}, started {stamp}"
        # the lines after the last holder's are kept (seal.py reads them: the key count must not
        # be lost to a kill at this instant; a seal kept holds only while every file is unchanged)
        try:
            self._write(self._holder, *self.previous.splitlines()[1:])
        except OSError as exc:
            self.release()
            raise LedgerError(f"cannot write lock file {self.path}: {reason_of(exc)}") from exc

    def make_workdir(self) -> Path:
        """The run's work folder beside the results file, held (flock) and emptied of what a
        killed run left there; removed by the run at its end."""
        workdir = self._paths.workdir
        if workdir.is_symlink():  # followed, emptied, and never removed (rmtree refuses links)
            self.release()
            raise LedgerError(f"the work folder {workdir} is a symbolic link; remove it (the run makes its own)")
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            self.release()
            raise LedgerError(f"cannot create work folder {workdir}: {reason_of(exc)}") from exc
        self._take(fd, f"working in {workdir.name}")
        self._workdir_fd = fd
        try:
            self._keep_a_killed_runs_records(workdir / OWN_COPY)
            for entry in os.scandir(workdir):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
        except OSError as exc:
            self.release()
            raise LedgerError(f"cannot empty work folder {workdir}: {reason_of(exc)}") from exc
        return workdir

    def _keep_a_killed_runs_records(self, own: Path) -> None:
        """A run killed while sending leaves its own copy of the journal (journal.py). Where the
        journal is no longer that copy and more (truncated or written over in place before the
        kill), the copy holds records nothing else does: it is saved beside the results as
        records to fold in (`ledger repair`) instead of being emptied away with the folder (a
        review found those rows sent again)."""
        if not own.is_file() or _begins_with(self._journal, own):
            return
        saved = self._paths.recovered()
        os.replace(own, saved)
        fsync_dir(saved.parent)

    def hold_journal(self) -> None:
        """flock the journal as it is now, if there is one (again after the run made a new one:
        flock locks an open file, so the same file opened twice would refuse itself)."""
        try:
            fd = os.open(self._journal, os.O_RDONLY)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.release()
            raise LedgerError(f"cannot open journal {self._journal}: {reason_of(exc)}") from exc
        if self._journal_fd is not None and _same(os.fstat(fd), os.fstat(self._journal_fd)):
            os.close(fd)  # held already
            return
        self._take(fd, f"writing to {self._journal.name}")
        if self._journal_fd is not None:
            os.close(self._journal_fd)
        self._journal_fd = fd

    def _take(self, fd: int, doing: str) -> None:
        """flock `fd` (the work folder, the journal), or refuse: another run holds it, `doing`."""
        if not _flocked(fd):
            os.close(fd)
            self.release()
            raise LockError(f"another si-ingest run is {doing} (its lock file was removed?); wait for it to finish")

    def seal(self, *lines: str) -> None:
        """Put `lines` (seal.py) after the holder's, in place of any before, for the next run to
        read; best effort."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):  # no seal: the next run checks the results file against the ledger
            self._write(self._holder, *lines)

    def _write(self, *lines: str) -> None:
        """The lock file's content, replaced with no instant at which it is empty: written over
        the old, then cut to length (a kill between leaves whole old lines after the new ones),
        then fsynced: the key count in it guards against a journal restored from an older copy,
        and a power cut must not take it back to an older count while the journal's records stay."""
        assert self._fd is not None
        data = "".join(f"{line}\n" for line in lines).encode()
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))
        os.fsync(self._fd)

    def release(self) -> None:
        for fd in (self._journal_fd, self._workdir_fd, self._fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._journal_fd = self._workdir_fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_all(fd: int, limit: int = 1 << 16) -> str:
    chunks = []
    offset = 0
    while offset < limit and (chunk := os.pread(fd, 4096, offset)):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _flocked(fd: int) -> bool:
    """flock(fd) taken, or not needed: False only when another process holds it. A file system
    that cannot flock this descriptor (NFS wants the file open for writing) leaves it to the
    lock file, which is opened for writing."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def _begins_with(journal: Path, copy: Path) -> bool:
    """`journal` holds every byte of `copy`, from its start (the journal is written first)."""
    try:
        with open(journal, "rb") as whole, open(copy, "rb") as part:
            while chunk := part.read(1 << 20):
                if whole.read(len(chunk)) != chunk:
                    return False
    except FileNotFoundError:
        return False
    return True
