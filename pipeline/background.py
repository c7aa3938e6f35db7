"""Overlap the planner's I/O with its compute: a reader one batch ahead, a writer one file behind.

Pass 1 (plan.py) reads a CSV block, validates and keys it, then writes its spill and key run.
The reading (numpy and polars' CSV parser) and the Parquet writes release the GIL, so on two
cores they run while the main thread validates the next batch: the 5M-row validate went from
11.6-13.2 s to 10.0-10.5 s (bench/PROFILE.md, last section).

Memory stays bounded: the reader makes an item only when fewer than `depth` wait beyond the one
the consumer holds (a slot is taken before the item is made, not after), and the writer holds at
most `depth` queued writes besides the one running. Errors cross over: a reader's exception is
raised where the consumer asks for the next item, a write's at the next `submit` or at `close`.

Stopping: when the consumer leaves early (an error, or the planner's signal handler raising in
the main thread) the reader is told to stop and is not waited for beyond JOIN_S: it only reads
input, and a block being parsed must not hold up Ctrl-C. The writer, which writes into the work
folder, is always waited for, even through a second signal, so nothing is written into the
folder after the run removed it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")
_POLL_S = 0.1
JOIN_S = 0.2  # the longest an early exit waits for the reader thread


class _End:
    pass


_END = _End()


def read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """`items`, produced by a thread at most `depth` items ahead of the one the consumer holds."""
    slots: queue.Queue[tuple[T | _End | None, BaseException | None]] = queue.Queue()
    room = threading.Semaphore(depth)
    stop = threading.Event()

    def wait_for_room() -> bool:
        while not stop.is_set():
            if room.acquire(timeout=_POLL_S):
                return True
        return False

    def produce() -> None:
        try:
            while wait_for_room():
                try:
                    item = next(items)
                except StopIteration:
                    slots.put((_END, None))
                    return
                slots.put((item, None))
        except BaseException as exc:  # handed to the consumer, raised there
            slots.put((None, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="si-ingest-read-ahead", daemon=True)
    thread.start()
    finished = False
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if isinstance(item, _End):
                finished = True
                return
            room.release()  # the consumer holds this one now: the reader may make the next
            yield item  # type: ignore[misc]  # not None: an entry without error carries an item
    finally:
        stop.set()
        thread.join(None if finished else JOIN_S)


class Writer:
    """Runs writes on a thread, at most `depth` queued behind the caller; `close` waits for them all."""

    def __init__(self, depth: int = 1) -> None:
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="si-ingest-writer")
        self._pending: list[Future[None]] = []

    def submit(self, write: Callable[..., None], *args: Any) -> None:
        """Queue `write(*args)`; waits while more than `depth` are queued (an earlier failure raises)."""
        self._pending.append(self._pool.submit(write, *args))
        while len(self._pending) > self._depth:
            self._pending.pop(0).result()

    def close(self) -> None:
        """Wait for every write; the first failure raises."""
        try:
            while self._pending:
                self._pending.pop(0).result()
        finally:
            self._abandon()

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self._abandon()  # leaving on an error: queued writes are dropped, the running one finishes

    def _abandon(self) -> None:
        """Drop the queued writes and wait for the running one, whatever is raised meanwhile."""
        for future in self._pending:
            future.cancel()
        running = [f for f in self._pending if not f.cancelled()]
        self._pending = []
        self._pool.shutdown(wait=False, cancel_futures=True)
        interrupted: BaseException | None = None
        while running:
            try:
                wait_all(running)
                running = []
            except BaseException as exc:  # a second signal: the write still lands before the folder goes
                interrupted = interrupted or exc
        if interrupted is not None:
            raise interrupted
