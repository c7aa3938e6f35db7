"""`--rate auto`: find the server's real limit fast, hold just under it, follow it if it moves.

This follows the AWS SDK's adaptive retry mode (botocore `retries/adaptive.py`, `throttling.py`,
`bucket.py`), which applies TCP CUBIC (RFC 9438) to a request rate:
- the send rate is measured in 0.5 s buckets and smoothed (EMA, weight 0.8 on the new bucket);
- on a throttle, the rate at which 429s began is learned, W_max = min(measured, current), and
  the rate drops to BETA * W_max; K = cbrt(W_max * (1 - BETA) / C);
- on each real success the rate follows W(t) = C * (t - K)**3 + W_max, t seconds since the
  throttle: fast back to just below W_max, a plateau there, then probing above it, slowly at
  first and faster the longer it stays quiet (so a limit that rose is found in seconds);
- never more than 2x the measured rate (a rate the client is not sending is not evidence).
Before the first throttle the rate grows GROWTH-fold every second from AUTO_START (TCP's slow
start, which doubles per round trip; see below for why 3).

Where this differs, and why:
- BETA = 0.95, not 0.7: a gateway's limit is a wall, not shared congestion; cutting to 70%
  would give away 30% of the account's goodput for seconds after every probe. Against 0.9
  (virtual clock, tests/test_adaptive.py): goodput 94.2 -> 95.2% of a 100/s window and
  98.4 -> 98.7% of a leaky bucket, a risen limit found in at most 4.0 s instead of 4.5 (the
  shallower dip shortens K), for 429s 0.23 -> 0.25% of requests.
- One cut per throttle episode: the requests in flight when the limit was crossed all come
  back 429 together; a 429 for a request sent before the last cut says nothing new.
- Retry-After makes the throttled row wait, and pauses every worker only when it is longer
  than PAUSE_OVER seconds (a server asking for a real break); a sliding window's 1-second
  Retry-After is not a reason to stop the other workers, nor to cut more than once.
- A limit that rose is searched for, not crept up to: once the probe has carried the rate
  RISEN (5%) above W_max and the measured rate is past W_max too, with no throttle, slow
  start resumes from there until the next 429. Pure CUBIC (C = 0.4) took up to 8 s to follow
  a limit raised from 50/s to 150/s, depending on how long before the change the last probe
  was throttled; with this search doubling per second, up to 5.25 s (bench_rate: 5.25 s once);
  tripling (GROWTH = 3), at most 4.5 s, mean 2.5 s, and with BETA 0.95 at most 4.0 s
  (virtual-clock simulation over 24 phases, tests/test_adaptive.py), with the same goodput and
  429 share; growing 4-fold was no faster (4.75 s) and throttled more.
- Only real API answers (created, rejected, failed) grow the rate; 5xx and connect errors
  neither grow nor cut it.
- A queue is a throttle too (TCP Vegas's reading of delay): a gateway that delays instead of
  refusing (nginx `limit_req` with a burst and no `nodelay`) never answers 429, and slow start
  had kept tripling until `--concurrency` requests waited in its queue past the read timeout
  (the real-gateway sweep: 79 of 150 rows `unknown`, never passed on). Latency is read per
  round of ROUND answers, by the round's fastest (HyStart++, RFC 9406: jitter rarely delays
  every answer of a round, a queue does): a round EARLY_EXTRA slower than the fastest of the
  last FASTEST_WINDOW seconds (and twice it) ends slow start at the rate that gets through; one
  QUEUE_EXTRA slower (and QUEUE_FACTOR times), or a read timeout, cuts the rate as a 429 does,
  below what gets through so the backlog drains in DRAIN_S; no other queue cut until then. A
  wait that has not fallen by then was no queue but the API turning slower: it becomes the new
  fastest (cutting again and again had pinned the rate at ~1/s after a 0.05 -> 1.5 s step).
- Standard headers are read when a gateway sends them (`RateLimit-Limit`/`-Remaining`/
  `-Reset`, the `X-RateLimit-*` forms, `RateLimit-Policy: N;w=S`): a stated limit caps the
  rate at limit/window, and 0 remaining pauses every worker until the reset.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Mapping

from .limiter import RateLimiter

AUTO_START = 10.0  # requests/s where --rate auto begins
AUTO_MIN = 1.0
AUTO_MAX = 10_000.0
BETA = 0.95  # the rate after a throttle, as a share of the rate where 429s began
C = 0.4  # CUBIC's scaling constant (requests/s per s**3), as botocore
MEASURE_BUCKET = 0.5  # seconds per send-rate bucket
SMOOTH = 0.8  # weight of the newest bucket in the measured rate
UPDATE_EVERY = 0.05  # seconds between two rate changes on success (limits timer churn)
PAUSE_OVER = 2.0  # seconds: a longer Retry-After pauses every worker
GROWTH = 3.0  # slow start (and the search for a risen limit): growth per second until a throttle
RISEN = 0.05  # sent this share above W_max with no throttle: the limit rose, slow start again
ROUND = 4  # answers per round: a round's fastest answer rises only when every answer waits longer
QUEUE_FACTOR = 4.0  # a round's fastest this many times the fastest lately...
QUEUE_EXTRA = 1.0  # ...and this many seconds slower: the answers waited in a queue, a throttle
EARLY_EXTRA = 0.25  # in slow start, twice the fastest and this much slower: a queue forms, stop tripling
FASTEST_WINDOW = 30  # seconds over which the fastest answer is remembered
DRAIN_S = 2.0  # after a queue is seen, the rate leaves room to drain its backlog in this long
DRAINED = 0.75  # ...and if the wait has not fallen below this share of it by then, it was no queue
SUCCESS_SPAN = 10  # s of successes kept (what got through is counted over as long as answers wait)
GROWTH_FLOOR = 2.0  # requests/s the rate may always grow to, whatever was measured (see `succeeded`)
_POLICY = re.compile(r"^\s*(\d+)\s*;\s*w\s*=\s*(\d+)")


class Controller:
    """Turns answers into the limiter's rate. Times come from `clock` (the loop's, in a run)."""

    def __init__(self, limiter: RateLimiter, clock: Callable[[], float], start: float = AUTO_START) -> None:
        self._limiter = limiter
        self._clock = clock
        now = clock()
        self._slow_start = True
        self._w_max = start
        self._k = 0.0
        self._epoch = now  # the last throttle (or start)
        self._last_cut = float("-inf")
        self._last_update = now
        self._stated_cap = math.inf
        self._bucket_start = now
        self._bucket_sent = limiter.sent
        self.measured = 0.0
        self._successes: deque[float] = deque()  # times of the successes of the last SUCCESS_SPAN s
        self._round: list[float] = []  # latencies of the answers of the round under way
        self._wait = 0.0  # the last round's wait beyond the fastest
        self._draining: tuple[float, float] | None = None  # (until, the wait then) after a queued cut
        self._fastest: deque[tuple[int, float]] = deque()  # (second, fastest answer in it), FASTEST_WINDOW long
        self.throttles = 0
        limiter.set_rate(start)

    @property
    def rate(self) -> float:
        return self._limiter.rate

    def throttled(self, sent_at: float, retry_after: float | None) -> None:
        """A 429 for a request that left at `sent_at`."""
        now = self._clock()
        self._measure(now)
        if retry_after is not None and retry_after > PAUSE_OVER:
            self._limiter.pause(retry_after)
        self._cut(sent_at, now)

    def timed_out(self, sent_at: float) -> None:
        """No answer within the read timeout: as slow as a queue gets."""
        now = self._clock()
        self._measure(now)
        self._cut(sent_at, now, queued=True)

    def _cut(self, sent_at: float, now: float, *, queued: bool = False) -> None:
        """`queued`: the server holds what it cannot serve yet, so the rate it sustains is what
        came back in the last second, not what was sent: the rate drops below that, and the
        queue drains."""
        if sent_at <= self._last_cut:  # in flight before the last cut: already accounted for
            return
        self.throttles += 1
        w_max = min(self.measured or self.rate, self.rate)
        drain = 0.0
        if queued:
            # what got through, over as long as a request now waits: right after the API turned
            # slower, the last second alone saw almost no answer (it had cut to AUTO_MIN)
            w_max = self._recent_successes(now, 1.0 + self._wait)
            drain = w_max * self._wait / DRAIN_S  # the backlog (rate x extra wait), spread over DRAIN_S
            self._draining = (now + DRAIN_S, self._wait)
        elif self._slow_start:  # climbing fast, the smoothed rate lags: what got through counts
            w_max = max(w_max, self._recent_successes(now))
        self._slow_start = False
        self._w_max = max(AUTO_MIN, w_max)
        self._last_cut = now
        self._restart(now, max(AUTO_MIN, min(self._w_max * BETA, self._w_max * BETA - drain)))

    def _restart(self, now: float, rate: float) -> None:
        """The curve starts again at `rate` now and climbs back to W_max (CUBIC's K)."""
        self._k = ((self._w_max - rate) / C) ** (1.0 / 3.0)
        self._epoch = now
        self._set(rate)

    def succeeded(self, sent_at: float | None = None) -> None:
        """A real API answer (to a request that left at `sent_at`): grow along the curve (at most
        every UPDATE_EVERY seconds), unless its wait says it sat in a queue."""
        now = self._clock()
        self._measure(now)
        self._successes.append(now)
        if len(self._successes) > AUTO_MAX * SUCCESS_SPAN:
            self._successes.popleft()
        if sent_at is not None:
            queued, early = self._queued(now, now - sent_at, sent_at)
            if self._draining is not None:  # hold the drained rate until the queue has had its time
                return
            if queued:
                self._cut(sent_at, now, queued=True)
                return
            if early and self._slow_start:  # a queue begins: stop tripling, hold what gets through (HyStart)
                self._slow_start = False
                self._w_max = max(AUTO_MIN, self._recent_successes(now))
                self._restart(now, self._w_max)
                return
        if now - self._last_update < UPDATE_EVERY:
            return
        if self._slow_start:
            target = self._w_max * GROWTH ** (now - self._epoch)
        else:
            t = now - self._epoch
            target = C * (t - self._k) ** 3 + self._w_max
            if target > self._w_max * (1.0 + RISEN) and self.measured > self._w_max:
                # probed past the old limit with no throttle: it rose; search up fast
                self._slow_start, self._w_max, self._epoch = True, target, now
        if self.measured:
            # never 2x past what was sent; but a rate under 2/s paces floor(rate) requests a second,
            # so measured stays at half of it, and the cap alone would pin it there
            target = min(target, max(2.0 * self.measured, GROWTH_FLOOR))
        self._set(target)

    def headers(self, headers: Mapping[str, str]) -> None:
        """Read a gateway's stated limit (any answer may carry it)."""
        limit = _number(headers, "RateLimit-Limit", "X-RateLimit-Limit")
        window = None
        policy = headers.get("RateLimit-Policy") or headers.get("X-RateLimit-Policy")
        if policy:
            match = _POLICY.match(policy)
            if match:
                limit, window = float(match.group(1)), float(match.group(2))
        if limit is not None and limit > 0:
            self._stated_cap = limit / (window or 1.0)
            if self.rate > self._stated_cap:
                self._set(self._stated_cap)
        remaining = _number(headers, "RateLimit-Remaining", "X-RateLimit-Remaining")
        reset = _number(headers, "RateLimit-Reset", "X-RateLimit-Reset")
        if remaining == 0 and reset is not None and 0 < reset <= 3600:
            self._limiter.pause(reset)

    def _queued(self, now: float, latency: float, sent_at: float) -> tuple[bool, bool]:
        """Whether answers now wait far longer than the fastest of the last FASTEST_WINDOW s
        (a queue), and whether they begin to wait (a queue forming: the end of slow start).
        After a queued cut, only requests sent once the drain had its time say how it went."""
        second = int(now)
        if self._fastest and self._fastest[-1][0] == second:
            self._fastest[-1] = (second, min(self._fastest[-1][1], latency))
        else:
            self._fastest.append((second, latency))
        while self._fastest[0][0] <= second - FASTEST_WINDOW:
            self._fastest.popleft()
        fastest = min(f for _, f in self._fastest)
        if self._draining is not None and sent_at < self._draining[0]:
            return False, False
        self._round.append(latency)
        # after a drain, as many answers as a second brings (at a low rate, 4 had held it for 4 s)
        if len(self._round) < (ROUND if self._draining is None else max(1, min(ROUND, int(self.rate)))):
            return False, False
        least, self._round = min(self._round), []  # jitter rarely delays all ROUND; a queue delays every one
        self._wait = least - fastest
        if self._draining is not None:  # the first round sent after the drain: did the wait fall?
            wait = self._draining[1]
            self._draining = None
            self._restart(now, self._w_max * BETA)  # back to just under what got through
            if self._wait > DRAINED * wait:  # it did not drain: the API itself is this slow now
                self._fastest = deque([(second, least)])
                self._wait = 0.0
            return False, False
        queued = least > max(QUEUE_FACTOR * fastest, fastest + QUEUE_EXTRA)
        return queued, least > max(2.0 * fastest, fastest + EARLY_EXTRA)

    def _recent_successes(self, now: float, span: float = 1.0) -> float:
        """Answers that got through per second over the last `span` s (1 s: the server's own
        window, seen from here)."""
        span = min(span, SUCCESS_SPAN)
        while self._successes and self._successes[0] <= now - SUCCESS_SPAN:
            self._successes.popleft()
        count = 0
        for t in reversed(self._successes):
            if t <= now - span:
                break
            count += 1
        return count / span

    def _set(self, rate: float) -> None:
        rate = min(max(rate, AUTO_MIN), AUTO_MAX, self._stated_cap)
        self._last_update = self._clock()
        if abs(rate - self.rate) >= 0.01:
            self._limiter.set_rate(rate)

    def _measure(self, now: float) -> None:
        elapsed = now - self._bucket_start
        if elapsed >= MEASURE_BUCKET:
            sent = self._limiter.sent
            current = (sent - self._bucket_sent) / elapsed
            self.measured = current if not self.measured else SMOOTH * current + (1.0 - SMOOTH) * self.measured
            self._bucket_start, self._bucket_sent = now, sent


def _number(headers: Mapping[str, str], *names: str) -> float | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            try:
                number = float(value.split(",")[0].strip())
            except ValueError:
                continue
            if math.isfinite(number) and number >= 0:
                return number
    return None
