"""Bounded queue + N workers + retries + shutdown: rows in, one journal outcome per row out.

    rows (plan files) -> producer -> asyncio.Queue(maxsize) -> N workers -> journal
Each worker, per try: write the row's intent (group commit), take a token from the rate
limiter immediately before sending, send, record the outcome. The queue bound gives
backpressure, so memory does not grow with the input. Retries (429, 408, 503, connect
errors) back off with full jitter, `uniform(0, min(cap, base * 2**n))`, and never less than a
server's Retry-After. At a fixed rate a Retry-After also pauses every worker (the rate is
above the server's); with `--rate auto` the controller (adaptive.py) decides. `stop` (first
signal, or an account-level error) ends the run after the requests in flight, waking every
worker that waits for a token or a backoff; cancelling the task (second signal) ends it at
once, and the rows in flight are recorded as `unknown`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from .adaptive import Controller
from .errors import (
    AbortError,
    AccountError,
    AmbiguousError,
    CancelledBeforeSending,
    CircuitOpen,
    PermanentHTTPError,
    RedirectError,
    TransientError,
)
from .lanes import UNREACHABLE, Lane
from .ledger import Journal, now_iso
from .limiter import RateLimiter, StopEvent
from .models import ErrorCode, Outcome, Row, Status
from .progress import Snapshot
from .telemetry import CREATED, ERROR, THROTTLED, Telemetry

if TYPE_CHECKING:
    from .client import ZyntroClient

log = structlog.get_logger("si_ingest.submit")
PROGRESS_EVERY = 5.0  # seconds between progress snapshots (--progress-every)
DEFAULT_BREAKER = 50  # stop after this many identical row-level API errors in a row (0: never)
FINAL = tuple(s.value for s in (Status.CREATED, Status.REJECTED, Status.FAILED, Status.UNKNOWN))
PRODUCE_CHUNK = 2000  # rows read per trip to the reading thread
LONG_PAUSE_S = 10.0  # a Retry-After this long is logged (run.paused): progress alone shows 0/s and no why


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    max_attempts: int
    base: float
    cap: float

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after try number `attempt` (1-based) failed."""
        jitter = rng.uniform(0.0, min(self.cap, self.base * 2 ** (attempt - 1)))
        return max(jitter, retry_after or 0.0)


@dataclass
class SubmitStats:
    telemetry: Telemetry
    retries: int = 0
    throttled: int = 0  # 429 answers
    outcomes: Counter[str] = field(default_factory=Counter)  # every record, retries included
    final: Counter[str] = field(default_factory=Counter)  # each row's last status this run
    abort: AbortError | None = None  # the answer that stopped the run (account, endpoint, breaker)
    lanes: dict[str, Lane] = field(default_factory=dict)  # a multi-org run's lanes, for the summary

    @property
    def requests(self) -> int:
        return self.telemetry.requests

    @property
    def seconds(self) -> float:
        return self.telemetry.seconds

    @property
    def per_second(self) -> float:
        return self.telemetry.mean_rate()


class Submitter:
    def __init__(
        self,
        client: ZyntroClient | None,
        limiter: RateLimiter,
        journal: Journal,
        *,
        concurrency: int,
        retry: RetryPolicy,
        stop: asyncio.Event,
        seed: int | None = None,
        controller: Controller | None = None,
        breaker: int = DEFAULT_BREAKER,
        on_progress: Callable[[Snapshot], None] | None = None,
        progress_every: float = PROGRESS_EVERY,
        lanes: dict[str, Lane] | None = None,
    ) -> None:
        self._limiter = limiter  # the default lane's: the progress display shows it
        self._default = Lane(client, limiter, stop, controller, deque(maxlen=breaker))  # stops the run
        self.lanes: dict[str, Lane] = lanes or {}  # org_id -> its lane (multi-org runs)
        for lane in self.lanes.values():
            lane.breaker = deque(maxlen=breaker)
            if isinstance(stop, StopEvent):  # the run's stop stops every lane
                stop.on_set(lane.stop.set)
        self._stopped_by: AbortError | None = None  # the abort that stopped the whole run
        self._on_progress = on_progress
        self._progress_every = progress_every
        self._total = 0
        self._journal = journal
        self._concurrency = concurrency
        self._retry = retry
        self._stop = stop
        self._rng = random.Random(seed)
        self.stats = SubmitStats(Telemetry(time.monotonic, seed))
        self.in_flight = 0

    async def run(self, rows: Iterable[Row], total: int) -> SubmitStats:
        self._total = total
        queue: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=self._concurrency * 4)
        try:
            async with asyncio.TaskGroup() as group:
                progress = group.create_task(self._progress(total))
                tasks = [group.create_task(self._produce(rows, queue))]
                tasks += [group.create_task(self._work(queue)) for _ in range(self._concurrency)]
                await asyncio.wait(tasks)  # not queue.join(): an empty queue at the start is not the end
                progress.cancel()
        finally:
            self.stats.telemetry.stop()  # the summary's rate is the sending's, not the results render's too
            self._journal.flush()
            self.report_progress()
        return self.stats

    async def _produce(self, rows: Iterable[Row], queue: asyncio.Queue[Row | None]) -> None:
        """Feed the queue; rows are read (plan files, request bodies) in a thread, off the loop."""
        source = iter(rows)
        while not self._stop.is_set():
            chunk = await asyncio.to_thread(_take, source, PRODUCE_CHUNK)
            if not chunk:
                break
            for row in chunk:
                if self._stop.is_set():
                    break
                await queue.put(row)
        for _ in range(self._concurrency):
            await queue.put(None)

    async def _work(self, queue: asyncio.Queue[Row | None]) -> None:
        while True:
            row = await queue.get()
            try:
                if row is None:
                    return
                if not self._stop.is_set():
                    await self._process(row)
            finally:
                queue.task_done()

    async def _process(self, row: Row) -> None:
        last: TransientError | None = None
        loop = asyncio.get_running_loop()
        lane = self.lanes.get(row.org_id or "", self._default)
        if lane.stop.is_set():  # this org stopped (account error, breaker): the row stays pending
            self._record(self._not_sent(row, row.attempts, None, lane), lane=lane)
            return
        for attempt in range(1, self._retry.max_attempts + 1):
            total = row.attempts + attempt
            try:
                await self._journal.intent(row.row_key, total)
                # the token is taken last, immediately before the request leaves, so that neither a
                # slow disk nor a long group commit can bunch requests past the ceiling
                granted = not lane.stop.is_set() and await lane.limiter.acquire() and not lane.stop.is_set()
            except asyncio.CancelledError:  # stopped at once before it left (intent or token): pending
                self._record(self._not_sent(row, total - 1, last, lane), lane=lane)
                raise
            if not granted:
                self._record(self._not_sent(row, total - 1, last, lane), lane=lane)
                return
            sent_at = loop.time()
            sent = self.stats.telemetry.sent(lane.limiter.rate)
            lane.requests += 1
            self.in_flight += 1
            try:
                assert lane.client is not None, "rows without a key are refused before sending"
                outcome = await lane.client.send(row, total)
            except TransientError as exc:
                last = exc
                self.stats.telemetry.answered(sent, THROTTLED if exc.http_status == 429 else ERROR)
                if exc.code in UNREACHABLE:
                    self.stats.telemetry.never_connected += 1
                self._throttled(exc, sent_at, lane)
                final = attempt == self._retry.max_attempts
                self._record(_outcome(row, Status.FAILED, exc, total), final=final, lane=lane)
                if final:
                    if tripped := lane.gave_up(exc, attempt):
                        self._abort(tripped, lane, row.org_id, whole_run=False)
                    return
                self.stats.retries += 1
                try:
                    await self._sleep(self._retry.delay(attempt, exc.retry_after, self._rng), lane.stop)
                except asyncio.CancelledError:  # a second signal while waiting: nothing was created either
                    self._record(self._not_sent(row, total, last, lane), lane=lane)
                    raise
                if lane.stop.is_set():  # stopped while waiting to try again: nothing was created
                    self._record(self._not_sent(row, total, last, lane), lane=lane)
                    return
                continue
            except PermanentHTTPError as exc:
                lane.reached()
                self.stats.telemetry.answered(sent, ERROR)
                self._record(_outcome(row, Status.FAILED, exc, total), lane=lane)
                return
            except AmbiguousError as exc:
                self.stats.telemetry.answered(sent, ERROR)
                self._record(_outcome(row, Status.UNKNOWN, exc, total), lane=lane)
                if lane.controller is not None and exc.code == ErrorCode.READ_TIMEOUT:
                    lane.controller.timed_out(sent_at)  # a queue, at its worst
                if tripped := lane.ended_unknown(exc):
                    self._abort(tripped, lane, row.org_id, whole_run=False)
                return
            except AbortError as exc:
                self.stats.telemetry.answered(sent, ERROR)
                exc = _after_successes(exc, self.stats.final[Status.CREATED])
                if exc.maybe_created:  # a redirect that may follow a creation: the row is `unknown`
                    self._record(_outcome(row, Status.UNKNOWN, exc, total), lane=lane)
                else:
                    self._record(_outcome(row, Status.PENDING, exc, total - 1), lane=lane)
                self._abort(exc, lane, row.org_id, whole_run=not isinstance(exc, (AccountError, CircuitOpen)))
                return
            except CancelledBeforeSending:  # stopped at once while it connected: nothing left
                self._record(self._not_sent(row, total - 1, last, lane), lane=lane)
                raise
            except asyncio.CancelledError:
                self._record(
                    Outcome(
                        row.row_key,
                        Status.UNKNOWN,
                        error_code=ErrorCode.INTERRUPTED,
                        error_message="stopped at once while the request was in flight; it may have reached the API",
                        attempts=total,
                        updated_at=now_iso(),
                    )
                )
                raise
            finally:
                self.in_flight -= 1
            if lane.controller is not None:
                lane.controller.succeeded(sent_at)
            self.stats.telemetry.answered(sent, CREATED if outcome.status == Status.CREATED else ERROR)
            self._record(outcome, lane=lane)
            if tripped := lane.answered(outcome):
                self._abort(tripped, lane, row.org_id, whole_run=False)
            return

    def _abort(self, exc: AbortError, lane: Lane, org_id: str | None, *, whole_run: bool) -> None:
        """An account error or a tripped breaker stops its lane; a config error (no endpoint,
        an unverifiable certificate) stops the whole run."""
        if lane.abort is None:
            lane.abort = exc
            log.error("run.abort", code=exc.code, reason=str(exc), org_id=org_id if self.lanes else None)
        if self.stats.abort is None:
            self.stats.abort = exc
        lane.stop.set()
        if whole_run or lane is self._default:
            self._stopped_by = self._stopped_by or exc
            self._stop.set()

    def _not_sent(self, row: Row, attempts: int, last: TransientError | None, lane: Lane) -> Outcome:
        """`_not_sent`, with the abort that stopped this lane or the run, if one did (not a signal)."""
        return _not_sent(row, attempts, last, lane.abort or self._stopped_by)

    def _throttled(self, exc: TransientError, sent_at: float, lane: Lane) -> None:
        """A 429/408/503: the rate and the pauses it calls for (the row's own wait is its backoff).

        In auto mode a 503 cuts the rate as a 429 does: nginx's limit_req answers 503 unless told
        otherwise, and so do other gateways that shed load. Against a leaky bucket of 100/s that
        answers 503, auto mode had kept growing: 690 of 2,190 requests refused (31%), against 3
        with 429s; an outage's 503s only slow the retries a little more.
        """
        if exc.retry_after is not None and exc.retry_after >= LONG_PAUSE_S:
            until = time.monotonic() + exc.retry_after
            if until > lane.paused_until + LONG_PAUSE_S:  # once per pause, not per throttled answer
                lane.paused_until = until
                log.warning(
                    "run.paused",
                    seconds=round(exc.retry_after, 1),
                    http_status=exc.http_status,
                    reason="the server's Retry-After (capped at 6 h); SIGTERM stops the run, unsent rows stay pending",
                )
        if exc.http_status in (429, 503):
            self.stats.throttled += exc.http_status == 429
            if lane.controller is not None:
                lane.controller.throttled(sent_at, exc.retry_after)
                return
        if exc.retry_after:  # a fixed rate above the server's, or a 503: everyone on this key waits
            lane.limiter.pause(exc.retry_after)

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> None:
        """Back off, waking early if the run (or this lane) is told to stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()

    def _record(self, outcome: Outcome, *, final: bool = True, lane: Lane | None = None) -> None:
        self._journal.outcome(outcome)
        self.stats.outcomes[outcome.status.value] += 1
        if final:
            self.stats.final[outcome.status.value] += 1
            if lane is not None:
                lane.final[outcome.status.value] += 1

    async def _progress(self, total: int) -> None:
        """A snapshot now, then every `progress_every` seconds (cancelled when the run ends)."""
        while True:
            self.report_progress()
            await asyncio.sleep(self._progress_every)

    def report_progress(self) -> None:
        if self._on_progress is None:
            return
        outcomes = {status: self.stats.final[status] for status in FINAL}
        self._on_progress(
            Snapshot(
                done=sum(outcomes.values()),
                total=self._total,
                outcomes=outcomes,
                requests=self.stats.requests,
                rate=round(self.stats.telemetry.current_rate(), 1),
                rate_limit=round(self._limiter.rate, 1),
                in_flight=self.in_flight,
            )
        )


def _take(rows: Iterator[Row], count: int) -> list[Row]:
    return list(itertools.islice(rows, count))


def _outcome(
    row: Row, status: Status, exc: TransientError | PermanentHTTPError | AmbiguousError | AbortError, attempts: int
) -> Outcome:
    return Outcome(
        row.row_key,
        status,
        error_code=str(exc.code),
        error_message=exc.message,
        attempts=attempts,
        http_status=exc.http_status,
        updated_at=now_iso(),
    )


def _after_successes(exc: AbortError, created: int) -> AbortError:
    """A redirect after rows were created through the same base URL is told as such (RedirectError
    says why); a 307/308 is not an error page's redirect, and says the row was not processed."""
    if not isinstance(exc, RedirectError) or not exc.maybe_created or not created:
        return exc
    return exc.after(created)


def _not_sent(row: Row, attempts: int, last: TransientError | None, abort: AbortError | None = None) -> Outcome:
    """A row the run stopped before (re)sending: `pending` (the contract: nothing was created and
    `--max-attempts` was not used up), with the last try's answer when there was one. Stopped by
    an abort (an account error, a breaker), a row never tried has no code, like the rows no worker
    had picked up: INTERRUPTED is for signals."""
    if last is not None:
        return Outcome(
            row.row_key,
            Status.PENDING,
            error_code=str(last.code),
            error_message=f"the run stopped before this row was tried again; last try: {last.message}",
            attempts=attempts,
            http_status=last.http_status,
            updated_at=now_iso(),
        )
    if abort is not None:
        return Outcome(
            row.row_key,
            Status.PENDING,
            error_message=f"not sent: the run stopped on {abort.code}",
            attempts=attempts,
            updated_at=now_iso(),
        )
    return Outcome(
        row.row_key,
        Status.PENDING,
        error_code=ErrorCode.INTERRUPTED,
        error_message="the run stopped before this row was sent",
        attempts=attempts,
        updated_at=now_iso(),
    )
