"""The journal writer: write-ahead intents, group commit, and a check that the file is still ours.

Never send what cannot be recorded: a worker sends only after its intent is written (and
fsynced, unless fsync is off) together with every other intent of the same event-loop tick:
one write() for the batch (group commit). Outcomes ride along with the next write.

Before every write the journal checks that its path still names the file it opened (same
device and inode, still linked): a journal deleted, replaced or moved while the run is
sending would otherwise swallow the records of requests that really left, and the next run
would send them again. Any write error or identity loss stops sending at once (LedgerError);
what this run wrote stays readable through the open descriptor (`copy_to`), so the run can
still render its results and save its records.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from ..errors import LedgerError
from ..models import Outcome
from . import records


class Journal:
    """Append-only write-ahead journal with group commit on the event loop."""

    def __init__(self, path: Path, *, fsync: bool, next_seq: int) -> None:
        self.path = path
        self._fsync = fsync
        self._seq = next_seq
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._buffer: list[bytes] = []
        self._has_intent = False
        self._commit: asyncio.Future[None] | None = None
        self._scheduled = False
        self.error: LedgerError | None = None
        self.lost = False  # the path no longer names our file (deleted, replaced, moved)
        self.writes = 0
        self.records = 0

    def open(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            st = os.fstat(self._fd)
        except OSError as exc:
            raise LedgerError(f"cannot write journal {self.path}: {exc.strerror}") from exc
        self._identity = (st.st_dev, st.st_ino)
        if not self._still_ours():
            raise LedgerError(f"the journal {self.path} changed while it was being opened")

    @property
    def next_seq(self) -> int:
        return self._seq

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def intent(self, row_key: str, attempt: int) -> None:
        """Return once `row_key` is durably marked in flight; raises LedgerError if it cannot be."""
        if self.error is not None:
            raise self.error
        self._append(records.intent(self._seq, row_key, attempt))
        self._has_intent = True
        if self._commit is None:
            self._commit = asyncio.get_running_loop().create_future()
        commit = self._commit
        self._schedule()
        await asyncio.shield(commit)

    def outcome(self, outcome: Outcome) -> None:
        """Queue an outcome; it is written with the next group commit (this loop tick)."""
        self._append(records.outcome(self._seq, outcome))
        self._schedule()

    def _append(self, line: bytes) -> None:
        self._buffer.append(line)
        self._seq += 1
        self.records += 1

    def flush(self) -> None:
        """Write everything queued now (also called at shutdown, outside the loop's ticks).

        After the path stops naming our file, records still go to our descriptor (the run's
        own copy, saved by `copy_to`), but every commit fails so that nothing more is sent.
        """
        self._scheduled = False
        commit, self._commit = self._commit, None
        if self._buffer and self._fd is not None and not isinstance(self.error, _WriteFailed):
            data = b"".join(self._buffer)
            self._buffer.clear()
            sync, self._has_intent = self._has_intent and self._fsync, False
            try:
                self._write(data, sync=sync)
            except OSError as exc:
                self.error = _WriteFailed(f"cannot write journal {self.path}: {exc.strerror}; stopped sending")
            if self.error is None and not self._still_ours():
                self.lost = True
                self.error = LedgerError(
                    f"the journal {self.path} was deleted, replaced or moved while the run was sending; stopped sending"
                )
        if commit is not None and not commit.done():
            if self.error is not None:
                commit.set_exception(self.error)
            else:
                commit.set_result(None)

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def check_still_ours(self) -> None:
        """Mark the journal lost if its path no longer names the file this run wrote to."""
        if self._fd is not None and not self.lost and not self._still_ours():
            self.lost = True
            self.error = self.error or LedgerError(
                f"the journal {self.path} was deleted, replaced or moved during the run"
            )

    def _still_ours(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._identity and st.st_nlink > 0

    def _write(self, data: bytes, *, sync: bool) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if sync:
            os.fsync(self._fd)
        self.writes += 1

    def copy_to(self, dest: Path) -> None:
        """Copy what this journal holds (through its descriptor, even if unlinked) to `dest`."""
        if self._fd is None:
            raise LedgerError(f"journal {self.path} is closed")
        reader = os.open(f"/proc/self/fd/{self._fd}", os.O_RDONLY)
        try:
            with open(dest, "wb") as out:
                while chunk := os.read(reader, 1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        finally:
            os.close(reader)


class _WriteFailed(LedgerError):
    """A write to the journal failed: nothing more can be recorded, so nothing more is sent."""
