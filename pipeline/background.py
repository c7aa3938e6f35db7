"""Overlap the planner's I/O with its compute: a reader one batch ahead, a writer one file behind.

Pass 1 (plan.py) reads a CSV block, validates and keys it, then writes its spill and key run.
The reading (numpy and polars' CSV parser) and the Parquet writes release the GIL, so on two
cores they can run while the main thread validates the next batch. Measured on the 1M-row rerun
and the 5M-row validate (bench/ledger_scale.py): see bench/RESULTS.md.

Memory stays bounded: the reader holds at most `depth` batches ahead and the writer at most
`depth` frames not yet written. Errors cross over: a reader's exception is raised where the
consumer asks for the next batch, a write's at the next `write` or at `close`. Both threads
stop when the consumer stops (an error, a signal's exception or a finished loop), so nothing
is written into a work folder after it was removed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")
_POLL_S = 0.1


class _End:
    pass


_END = _End()


def read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """`items`, produced by a thread up to `depth` items ahead of the consumer."""
    slots: queue.Queue[tuple[T | _End | None, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[T | _End | None, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((None, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="si-ingest-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if isinstance(item, _End):
                return
            yield item  # type: ignore[misc]  # not None: an entry without error carries an item
    finally:
        stop.set()
        thread.join()


class Writer:
    """Runs writes on a thread, at most `depth` behind the caller; `close` waits for them all."""

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
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
            return
        self._pool.shutdown(wait=True, cancel_futures=True)  # leaving on an error: queued writes are dropped
