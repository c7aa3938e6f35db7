"""The planner's overlap helpers: a reader ahead and a writer behind, bounded, errors carried over."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pipeline import background
from pipeline.background import Writer, read_ahead


def test_read_ahead_yields_every_item_in_order_and_runs_at_most_depth_ahead():
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(20):
            produced.append(i)
            yield i

    seen = []
    for item in read_ahead(items(), depth=2):
        time.sleep(0.002)
        # the consumer holds `item`; the thread may have made `depth` more, never a third
        assert len(produced) <= item + 1 + 2
        seen.append(item)
    assert seen == list(range(20))


def test_read_ahead_raises_the_readers_error_where_the_consumer_asks():
    def items() -> Iterator[int]:
        yield 1
        raise ValueError("row 7 is broken")

    got = []
    with pytest.raises(ValueError, match="row 7 is broken"):
        for item in read_ahead(items()):
            got.append(item)
    assert got == [1]


def test_a_consumer_that_stops_early_stops_and_closes_the_reader():
    closed = threading.Event()

    def items() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    before = threading.active_count()
    reader = read_ahead(items())
    assert next(reader) == 0
    reader.close()  # as when the loop body raises (a signal's exception) or breaks
    assert closed.wait(2)
    assert threading.active_count() == before


def test_the_writer_writes_everything_in_order_and_close_waits_for_it():
    written: list[int] = []

    def write(i: int) -> None:
        time.sleep(0.002)
        written.append(i)

    with Writer(depth=2) as writer:
        for i in range(10):
            writer.submit(write, i)
            assert len(written) >= i - 2  # never more than `depth` behind (plus the one running)
    assert written == list(range(10))


def test_a_failed_write_raises_at_the_next_submit_or_at_close():
    def write(i: int) -> None:
        if i == 1:
            raise OSError(28, "No space left on device")

    writer = Writer(depth=1)
    writer.submit(write, 0)
    writer.submit(write, 1)
    with pytest.raises(OSError, match="No space left"):
        for i in range(2, 10):
            writer.submit(write, i)
        writer.close()


def test_leaving_on_an_error_drops_the_queued_writes_and_waits_for_the_running_one():
    started, release = threading.Event(), threading.Event()
    written: list[int] = []

    def write(i: int) -> None:
        if i == 0:
            started.set()
            release.wait(2)
        written.append(i)

    with pytest.raises(KeyboardInterrupt), Writer(depth=5) as writer:
        writer.submit(write, 0)
        writer.submit(write, 1)
        assert started.wait(2)
        threading.Timer(0.05, release.set).start()
        raise KeyboardInterrupt
    assert written == [0]  # the running write finished before the with block was left; 1 never ran


def test_leaving_early_does_not_wait_for_a_reader_stuck_in_a_slow_read():
    release = threading.Event()

    def items() -> Iterator[int]:
        yield 1
        release.wait(5)  # a batch that takes long to parse (or a slow mount)
        yield 2

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):  # as the planner's signal handler raises
        for _ in read_ahead(items()):
            time.sleep(0.05)
            raise KeyboardInterrupt
    assert time.monotonic() - started < 1.0  # JOIN_S, not the 5 s read
    release.set()


def test_a_second_interrupt_while_leaving_still_waits_for_the_running_write(monkeypatch):
    started, finished = threading.Event(), threading.Event()

    def write() -> None:
        started.set()
        time.sleep(0.3)
        finished.set()

    real_wait = background.wait_all
    calls = []

    def interrupted_once(futures):  # the first wait is cut short by another signal
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt("second signal")
        return real_wait(futures)

    monkeypatch.setattr(background, "wait_all", interrupted_once)
    with pytest.raises(KeyboardInterrupt), Writer(depth=1) as writer:
        writer.submit(write)
        assert started.wait(2)
        raise KeyboardInterrupt("first signal")
    assert finished.is_set()  # the write landed before the with block was left
