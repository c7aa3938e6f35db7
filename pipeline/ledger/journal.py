"""The journal writer: write-ahead intents, group commit off the event loop, "is it still ours".

Never send what cannot be recorded: a worker sends only after its intent is written (and
fsynced, unless fsync is off). Records are buffered; at the end of each event-loop tick the
buffer is written as one write() (a group commit): by a writer thread when it holds intents
to fsync, here when there is nothing to wait for (outcomes only, or fsync off; a write to
the page cache takes microseconds). While a commit is in the thread, new records gather for the next one, so a
slow disk makes the groups bigger instead of stalling the loop (a 50 ms fsync no longer
freezes every request in flight, nor bunches the sends that follow it).

After every write the thread checks that the path still names the file it opened (same
device and inode, still linked), and that the file is as long as this run made it: a journal
deleted, replaced or moved while the run is sending, or changed in place (truncated by
logrotate's copytruncate, an older copy written over it with `cp`), would otherwise swallow
the records of requests that really left, and the next run would send them again. A write
error or a lost journal fails every waiting and later commit, so nothing more is sent
(LedgerError).

The run keeps its own copy of the journal in its work folder (`own_copy`: the journal as it
found it, then every commit written there too, to the page cache only): a file changed in
place has lost this run's records, and a deleted one is read back from the copy as well, so
`copy_to` can always save them for the results and `ledger repair`. The copy costs one more
write() per commit, no fsync: after a kill the journal itself is what counts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
from pathlib import Path

from ..errors import LedgerError, reason_of
from ..models import Outcome
from . import records

OWN_COPY = "journal.own"  # the run's own copy, in its work folder


class Journal:
    """Append-only write-ahead journal with group commit in a writer thread."""

    def __init__(self, path: Path, *, fsync: bool, next_seq: int, own_copy: Path | None = None) -> None:
        self.path = path
        self._fsync = fsync
        self._seq = next_seq
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._size = 0  # the journal's length as this run made it
        self._own_copy = own_copy
        self._copy_fd: int | None = None
        self._changed = False  # changed in place by someone else: written no more
        self._buffer: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []  # intents in the buffer
        self._scheduled = False
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="si-journal")
        self._in_thread: concurrent.futures.Future[None] | None = None
        self.error: LedgerError | None = None
        self.lost = False  # the path no longer names our file (deleted, replaced, moved)
        self.writes = 0
        self.records = 0

    def open(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            st = os.fstat(self._fd)
        except OSError as exc:
            raise LedgerError(f"cannot write journal {self.path}: {reason_of(exc)}") from exc
        self._identity = (st.st_dev, st.st_ino)
        self._size = st.st_size
        if not self._still_ours():
            raise LedgerError(f"the journal {self.path} changed while it was being opened")
        if self._own_copy is not None:
            self._start_copy(self._own_copy)

    def _start_copy(self, dest: Path) -> None:
        """The journal as it is now, then every commit: read back if the journal is lost. Without
        it a journal changed in place would lose this run's records for good, so a copy that
        cannot be made stops the run before any request, and one that cannot be written to
        stops sending, as the journal itself would (a review found the records claimed saved
        from the truncated journal when the copy had silently gone)."""
        try:
            shutil.copyfile(self.path, dest)
            fd = os.open(dest, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise LedgerError(f"cannot keep the run's copy of the journal in {dest}: {reason_of(exc)}") from exc
        if os.fstat(fd).st_size != self._size:
            os.close(fd)
            raise LedgerError(f"the journal {self.path} changed while it was being opened")
        self._copy_fd = fd

    @property
    def next_seq(self) -> int:
        return self._seq

    async def intent(self, row_key: str, attempt: int) -> None:
        """Return once `row_key` is durably marked in flight; raises LedgerError if it cannot be."""
        if self.error is not None:
            raise self.error
        self._buffer.append(records.intent(self._seq, row_key, attempt))
        self._seq += 1
        self.records += 1
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._schedule()
        await asyncio.shield(waiter)

    def outcome(self, outcome: Outcome) -> None:
        """Queue an outcome; it is written with the next group commit."""
        self._buffer.append(records.outcome(self._seq, outcome))
        self._seq += 1
        self.records += 1
        self._schedule()

    def _schedule(self) -> None:
        """Commit at the end of this tick, so every record of the tick shares one write."""
        if not self._scheduled and self._in_thread is None:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._commit)

    def _commit(self) -> None:
        self._scheduled = False
        if self._in_thread is not None or not self._buffer or self._fd is None:
            return
        if self.error is not None and not self.lost:
            self._fail(self._waiters)
            return
        data, waiters = b"".join(self._buffer), self._waiters
        self._buffer, self._waiters = [], []
        sync = bool(waiters) and self._fsync
        if not sync:  # no fsync to wait for: a write to the page cache takes microseconds, do it here
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            try:
                self._write(data, sync=False)
                done.set_result(None)
            except OSError as exc:
                done.set_exception(exc)
            self._committed(done, waiters)
            return
        self._in_thread = self._writer.submit(self._write, data, sync)
        loop = asyncio.get_running_loop()
        self._in_thread.add_done_callback(lambda done: loop.call_soon_threadsafe(self._committed, done, waiters))

    def _committed(self, done: concurrent.futures.Future[None], waiters: list[asyncio.Future[None]]) -> None:
        self._in_thread = None
        error = done.exception()
        if isinstance(error, OSError) and self.error is None:
            self.error = LedgerError(f"cannot write journal {self.path}: {reason_of(error)}; stopped sending")
        if self.error is not None:
            self._fail(waiters)
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        if self._buffer and self._fd is not None:
            self._commit()

    def _fail(self, waiters: list[asyncio.Future[None]]) -> None:
        assert self.error is not None
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(self.error)
        self._waiters = [w for w in self._waiters if w not in waiters]

    def _write(self, data: bytes, sync: bool) -> None:
        """In the writer thread: append, fsync if asked, then check the file is still ours.

        After the path stops naming our file, records still go to our descriptor (the run's
        own copy, saved by `copy_to`), but every commit fails so that nothing more is sent.
        """
        assert self._fd is not None
        if not self._changed and self.error is None and os.fstat(self._fd).st_size != self._size:
            self._changed_in_place()
        if not self._changed:  # a file someone else changed is left as they made it
            view = memoryview(data)
            while view:  # the length counted as written, a write cut short by a full disk included
                written = os.write(self._fd, view)
                self._size += written
                view = view[written:]
        if self._copy_fd is not None:
            _write_all(self._copy_fd, data)  # an error fails the commit: nothing more is sent
        if sync and not self._changed:
            os.fsync(self._fd)
        self.writes += 1
        if self.error is None:
            self._check()

    def _check(self) -> None:
        """Mark the journal lost if its path no longer names the file this run wrote to, or the
        file is not as long as this run made it (an error already met stands)."""
        if not self._still_ours():
            self.lost = True
            self.error = self.error or LedgerError(
                f"the journal {self.path} was deleted, replaced or moved while the run was sending; stopped sending"
            )
        elif os.fstat(self._fd).st_size != self._size:  # type: ignore[arg-type]  # open while checked
            self._changed_in_place()

    def _changed_in_place(self) -> None:
        """Someone else truncated or wrote over the journal: nothing more goes into it (the file is
        left as they made it, so `ledger repair` folds the saved records into a whole file), and
        every commit fails, so nothing more is sent."""
        self._changed = self.lost = True
        self.error = self.error or LedgerError(
            f"the journal {self.path} was changed in place (truncated or written over) while the run was"
            " sending; stopped sending"
        )

    def flush(self) -> None:
        """Wait for the commit in the thread, then write what is left, here (shutdown)."""
        if self._in_thread is not None:
            try:
                self._in_thread.result()
            except OSError as exc:
                self.error = self.error or LedgerError(f"cannot write journal {self.path}: {reason_of(exc)}")
            self._in_thread = None
        if not self._buffer or self._fd is None or (self.error is not None and not self.lost):
            return
        data, self._buffer = b"".join(self._buffer), []
        try:
            self._write(data, self._fsync)
        except OSError as exc:
            self.error = self.error or LedgerError(f"cannot write journal {self.path}: {reason_of(exc)}")

    def close(self) -> None:
        self.flush()
        self._writer.shutdown(wait=True)
        for fd in (self._fd, self._copy_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._copy_fd = None
        if self._own_copy is not None:
            self._own_copy.unlink(missing_ok=True)

    def check_still_ours(self) -> None:
        if self._fd is not None and not self.lost:
            self._check()

    def _still_ours(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._identity and st.st_nlink > 0

    def copy_to(self, dest: Path) -> None:
        """Copy what this run's journal holds to `dest`: from the run's own copy, else through the
        journal's descriptor (even if unlinked; not if it was changed in place)."""
        if self._fd is None:
            raise LedgerError(f"journal {self.path} is closed")
        if self._changed and self._copy_fd is None:
            raise LedgerError(f"the journal {self.path} was changed in place and the run kept no copy of it")
        source = f"/proc/self/fd/{self._copy_fd if self._copy_fd is not None else self._fd}"
        reader = os.open(source, os.O_RDONLY)
        try:
            with open(dest, "wb") as out:
                while chunk := os.read(reader, 1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        finally:
            os.close(reader)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
