"""Rate ceiling over every 1-second window, a shared Retry-After pause, and `--rate auto`.

aiolimiter's leaky bucket admits a burst of `max_rate` at once and then drains at
max_rate/time_period, so `AsyncLimiter(R, 1)` lets ~2R through in the first second
(FIELD-NOTES). With a bucket of size b draining at s per second, k acquisitions within any
window of T seconds satisfy k <= b + s*T. We pick s so that b + s*(1 + JITTER) < R + 1:
then no 1-second window holds more than R requests, even after the network bunches them by
up to JITTER seconds on their way to the server. b grows with R (1 at low rates, 10 at
1000/s) so that timer lateness can be banked and the steady rate stays ~97% of R.

No background task: waiters are futures woken by `loop.call_at` (aiolimiter, asyncio.sleep),
so there is nothing to clean up when the run stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

from aiolimiter import AsyncLimiter

JITTER = 0.02  # seconds the network may bunch requests by on their way to the server
SLACK = 0.05  # keeps b + s*(1 + JITTER) strictly below R + 1
PAUSE_RESOLUTION = 0.001  # seconds; a pause shorter than this is over (timers round)
AUTO_START = 10.0  # requests/s where --rate auto begins
AUTO_MIN = 1.0
AUTO_MAX = 10_000.0
AUTO_DECREASE = 0.7  # on a 429: rate *= 0.7 (AWS SDK adaptive mode)
AUTO_INCREASE = 1.15  # per throttle-free second
AUTO_QUIET = 2.0  # seconds without a 429 before growing again


def bucket(rate: float) -> AsyncLimiter:
    """An AsyncLimiter that never admits more than `rate` requests in any 1-second window."""
    size = min(10.0, max(1.0, 1.0 + rate * 0.01))
    # a window holds a whole number of requests: with rate 2.5 the ceiling is 2
    steady = (max(1, math.floor(rate)) + 1.0 - size - SLACK) / (1.0 + JITTER)
    if steady <= 0:  # pragma: no cover - impossible for rate > 0 given size <= 1 + rate/100
        raise ValueError(f"rate {rate} too low")
    return AsyncLimiter(size, size / steady)


def steady_rate(rate: float) -> float:
    """The long-run requests/s that `bucket(rate)` delivers (for reports and tests)."""
    limiter = bucket(rate)
    return limiter.max_rate / limiter.time_period


class RateLimiter:
    """What every worker awaits before each request: the ceiling, then any Retry-After pause."""

    def __init__(self, rate: float | str, stop: asyncio.Event | None = None) -> None:
        self._stop = stop
        self.auto = rate == "auto"
        self.rate = AUTO_START if self.auto else float(rate)
        self._limiter = bucket(self.rate)
        self._paused_until = 0.0
        self._last_change = 0.0
        self._last_throttle = float("-inf")

    async def acquire(self) -> None:
        """Wait for the ceiling and any pause; returns early, without a token, once `stop` is set."""
        loop = asyncio.get_running_loop()
        while True:
            if self._stop is not None and self._stop.is_set():
                return
            wait = self._paused_until - loop.time()
            if wait > PAUSE_RESOLUTION:
                await self._sleep(wait)
                continue
            await self._limiter.acquire()
            if self._paused_until - loop.time() <= PAUSE_RESOLUTION:
                return

    async def _sleep(self, seconds: float) -> None:
        """Sleep through a pause (up to Retry-After's 6 hours), waking at once if the run stops."""
        if self._stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    def pause(self, seconds: float) -> None:
        """Hold every worker for `seconds` (a server's Retry-After applies to the whole client)."""
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + seconds)

    def throttled(self) -> None:
        """A 429 came back. In auto mode, cut the rate (at most once per second of answers)."""
        if not self.auto:
            return
        now = asyncio.get_running_loop().time()
        self._last_throttle = now
        if now - self._last_change >= 1.0:
            self._set(max(AUTO_MIN, self.rate * AUTO_DECREASE), now)

    def succeeded(self) -> None:
        """An answer that was not a 429. In auto mode, grow the rate once per quiet second."""
        if not self.auto:
            return
        now = asyncio.get_running_loop().time()
        if now - self._last_throttle >= AUTO_QUIET and now - self._last_change >= 1.0:
            self._set(min(AUTO_MAX, self.rate * AUTO_INCREASE), now)

    def _set(self, rate: float, now: float) -> None:
        self.rate = rate
        self._last_change = now
        self._limiter = bucket(rate)
