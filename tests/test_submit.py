import asyncio
import random
from pathlib import Path

import pytest

from pipeline.errors import AccountError, AmbiguousError, TransientError
from pipeline.ledger import Ledger, replay
from pipeline.limiter import RateLimiter
from pipeline.models import Outcome, Row, Status
from pipeline.submit import RetryPolicy, Submitter


def test_backoff_is_full_jitter_capped_and_honours_retry_after():
    policy = RetryPolicy(max_attempts=5, base=0.5, cap=4.0)
    rng = random.Random(1)
    for attempt in range(1, 8):
        delays = [policy.delay(attempt, None, rng) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= min(4.0, 0.5 * 2 ** (attempt - 1))  # noqa: SIM300 - reads as a range
    assert all(policy.delay(1, 3.0, rng) >= 3.0 for _ in range(50))


class FakeClient:
    """Answers from a script per row key; records the peak number of requests in flight."""

    def __init__(self, script: dict[str, list]) -> None:
        self.script = script
        self.calls: list[str] = []
        self.in_flight = self.peak = 0

    async def send(self, row: Row, attempts: int) -> Outcome:
        self.calls.append(row.row_key)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            answers = self.script.get(row.row_key, [])
            answer = answers.pop(0) if answers else "ok"
            if isinstance(answer, Exception):
                raise answer
            return Outcome(row.row_key, Status.CREATED, sir_id=len(self.calls), attempts=attempts, http_status=200)
        finally:
            self.in_flight -= 1


async def submit(tmp_path: Path, script: dict, keys: list[str], concurrency: int = 4, max_attempts: int = 3):
    ledger = Ledger.open(tmp_path / "r.csv", tmp_path, writable=True)
    journal = ledger.journal(fsync=False)
    client = FakeClient(script)
    stop = asyncio.Event()
    submitter = Submitter(
        client,  # type: ignore[arg-type]  # a fake with ZyntroClient's send()
        RateLimiter(10_000),
        journal,
        concurrency=concurrency,
        retry=RetryPolicy(max_attempts=max_attempts, base=0.001, cap=0.01),
        stop=stop,
        seed=1,
    )
    stats = await submitter.run((Row(k, "in.csv", i + 1, b'{"x":1}') for i, k in enumerate(keys)), len(keys))
    journal.close()
    state, in_flight, _ = replay(ledger.paths.journal)
    return client, stats, {r["row_key"]: r for r in state.iter_rows(named=True)}, in_flight, stop


async def test_transient_errors_are_retried_to_success(tmp_path):
    script = {"a": [TransientError("HTTP_503", "x", 503), TransientError("HTTP_429", "x", 429, 0.0)]}
    client, stats, state, in_flight, _ = await submit(tmp_path, script, ["a", "b"])
    assert client.calls.count("a") == 3 and stats.retries == 2
    assert state["a"]["status"] == "created" and state["a"]["attempts"] == 3
    assert in_flight == []


async def test_retries_are_bounded_then_failed(tmp_path):
    script = {"a": [TransientError("HTTP_502", "bad gateway", 502)] * 5}
    client, _, state, _, _ = await submit(tmp_path, script, ["a"], max_attempts=3)
    assert client.calls.count("a") == 3
    assert (state["a"]["status"], state["a"]["error_code"], state["a"]["attempts"]) == ("failed", "HTTP_502", 3)


async def test_ambiguous_is_unknown_and_never_retried(tmp_path):
    client, _, state, _, _ = await submit(tmp_path, {"a": [AmbiguousError("CONNECTION_LOST", "gone")]}, ["a"])
    assert client.calls == ["a"] and state["a"]["status"] == "unknown"


async def test_account_error_stops_everything(tmp_path):
    keys = [f"k{i}" for i in range(50)]
    script = {"k0": [AccountError("INVALID_API_KEY", "bad key")]}
    client, stats, state, in_flight, stop = await submit(tmp_path, script, keys, concurrency=1)
    assert stop.is_set() and stats.abort is not None
    assert client.calls == ["k0"]
    assert state["k0"]["status"] == "pending" and state["k0"]["attempts"] == 0
    assert in_flight == [] and len(state) == 1


async def test_concurrency_is_bounded(tmp_path):
    client, _, state, _, _ = await submit(tmp_path, {}, [f"k{i}" for i in range(60)], concurrency=5)
    assert client.peak == 5 and len(state) == 60


async def test_cancel_records_in_flight_rows_as_unknown(tmp_path):
    ledger = Ledger.open(tmp_path / "r.csv", tmp_path, writable=True)
    journal = ledger.journal(fsync=False)

    class Slow(FakeClient):
        async def send(self, row, attempts):
            await asyncio.sleep(10)

    submitter = Submitter(
        Slow({}),  # type: ignore[arg-type]  # a fake with ZyntroClient's send()
        RateLimiter(10_000),
        journal,
        concurrency=3,
        retry=RetryPolicy(max_attempts=1, base=0.1, cap=1),
        stop=asyncio.Event(),
    )
    task = asyncio.create_task(submitter.run((Row(f"k{i}", "s", i, b"{}") for i in range(10)), 10))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    journal.close()
    state, in_flight, _ = replay(ledger.paths.journal)
    assert in_flight == [] and state["status"].to_list() == ["unknown"] * 3
    assert set(state["error_code"]) == {"INTERRUPTED"}


async def test_cancel_during_a_backoff_leaves_the_row_pending_with_its_last_answer(tmp_path):
    """A second signal while a throttled row waits for its next try: nothing was created, and
    --max-attempts was not used up, so `pending` (the contract), not `failed`."""
    client = FakeClient({"a": [TransientError("HTTP_429", "slow down", 429, 60.0)]})
    # the one try made and answered 429: in its 60 s Retry-After wait when the run is cancelled
    state, in_flight = await cancelled_run(
        tmp_path, client, [Row("a", "s", 1, b"{}")], rate=10_000, concurrency=1, wait=0.2
    )
    row = state.row(0, named=True)
    assert client.calls == ["a"] and in_flight == []
    assert (row["status"], row["error_code"], row["attempts"]) == ("pending", "HTTP_429", 1)


async def test_cancel_while_rows_wait_for_a_token_leaves_them_pending(tmp_path):
    """Intent written, token not yet given (a slow rate), then a second signal: those requests
    never left, so `pending` (they had read as unknown NO_ANSWER_RECORDED, needing --resend-unknown)."""
    client = FakeClient({})
    rows = [Row(f"k{i}", "s", i, b"{}") for i in range(4)]
    # one row sent at 1/s; three wait for their token when the run is cancelled
    state, in_flight = await cancelled_run(tmp_path, client, rows, rate=1.0, concurrency=4, wait=0.3)
    statuses = dict(zip(state["row_key"], state["status"], strict=True))
    assert in_flight == [] and len(client.calls) == 1
    assert sorted(statuses.values()) == ["created", "pending", "pending", "pending"]


async def cancelled_run(
    tmp_path, client, rows: list[Row], *, rate: float, concurrency: int, wait: float, fsync: bool = False
):
    """Submit `rows`, cancel the run after `wait` seconds (a second signal), return the replayed
    journal (state, rows left in flight)."""
    tmp_path.mkdir(exist_ok=True)
    ledger = Ledger.open(tmp_path / "r.csv", tmp_path, writable=True)
    journal = ledger.journal(fsync=fsync)
    submitter = Submitter(
        client,
        RateLimiter(rate),
        journal,
        concurrency=concurrency,
        retry=RetryPolicy(max_attempts=5, base=0.1, cap=1),
        stop=asyncio.Event(),
    )
    task = asyncio.create_task(submitter.run(iter(rows), len(rows)))
    await asyncio.sleep(wait)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    journal.close()
    state, in_flight, _ = replay(ledger.paths.journal)
    return state, in_flight


def test_a_redirect_after_successes_names_the_error_page_but_a_307_keeps_its_own_message():
    from pipeline.errors import RedirectError
    from pipeline.submit import _after_successes

    found = RedirectError(302, "/oops")
    assert _after_successes(found, 0) is found
    named = _after_successes(found, 3)
    assert "after 3 row(s) were created" in named.message and named.maybe_created and named.exit_code == 2
    temporary = RedirectError(307, "/elsewhere")
    assert _after_successes(temporary, 3) is temporary  # not processed there: no "may have been created"


async def test_cancel_before_a_request_left_leaves_its_row_pending(tmp_path, monkeypatch):
    """A second signal while rows wait for their intent to reach a slow disk, or while the client
    is still connecting: none of them left, so `pending` (they had read as `unknown`)."""
    import os
    import time

    from pipeline.errors import CancelledBeforeSending

    class Connecting(FakeClient):
        async def send(self, row, attempts):
            self.calls.append(row.row_key)
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                raise CancelledBeforeSending from None

    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        time.sleep(0.3)
        real_fsync(fd)

    rows = [Row(f"k{i}", "s", i, b"{}") for i in range(8)]
    monkeypatch.setattr(os, "fsync", slow_fsync)
    client = Connecting({})  # the first intents still wait for the disk when the run is cancelled
    state, in_flight = await cancelled_run(
        tmp_path / "a", client, rows, rate=10_000, concurrency=4, wait=0.1, fsync=True
    )
    monkeypatch.undo()
    assert in_flight == [] and set(state["status"]) == {"pending"} and client.calls == []
    client = Connecting({})  # four requests connecting when the run is cancelled
    state, in_flight = await cancelled_run(tmp_path / "b", client, rows, rate=10_000, concurrency=4, wait=0.1)
    assert len(client.calls) == 4 and in_flight == [] and set(state["status"]) == {"pending"}
