"""The two kinds of limiter gateways put in front of an API, as the sandbox plays them.

- SlidingWindow: at most N requests in the last second, else 429 with `Retry-After` (API
  gateways, Kong's sliding window, most SaaS limits). N may follow a schedule, so a limit
  that drops or rises mid-run can be tested; `headers` adds `RateLimit-Limit/-Remaining/
  -Reset` to every answer, as gateways that state their limit do.
- LeakyBucket: nginx `limit_req rate=R burst=B nodelay` with `limit_req_status 429`: the
  excess over the rate drains at R per second; a request that would take it past B is
  rejected with 429 and no `Retry-After`, and there is no window to wait out.
"""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    def __init__(self, schedule: tuple[tuple[float, int], ...], retry_after: str, headers: bool, start: float) -> None:
        self._schedule = sorted(schedule)  # (seconds since start, limit)
        self._retry_after = retry_after
        self._headers = headers
        self._start = start
        self._window: deque[float] = deque()

    def limit(self, now: float) -> int:
        elapsed = now - self._start
        current = self._schedule[0][1]
        for at, limit in self._schedule:
            if elapsed >= at:
                current = limit
        return current

    def admit(self, now: float) -> tuple[bool, dict[str, str]]:
        """(admitted, headers for the answer)."""
        window = self._window
        while window and window[0] <= now - 1.0:
            window.popleft()
        limit = self.limit(now)
        admitted = len(window) < limit
        if admitted:
            window.append(now)
        headers = {"Retry-After": self._retry_after} if not admitted else {}
        if self._headers:
            reset = max(0.0, window[0] + 1.0 - now) if window else 0.0
            headers |= {
                "RateLimit-Limit": str(limit),
                "RateLimit-Remaining": str(max(0, limit - len(window))),
                "RateLimit-Reset": str(round(reset + 0.499)),
            }
        return admitted, headers


class LeakyBucket:
    """nginx `limit_req rate=R burst=B`: the excess drains at R/s; past B, refused. With
    `nodelay` (the default here) an admitted request passes at once; without it (`delay`) it
    waits its turn, excess / R seconds (`wait`), and the client sees no refusal, only the wait."""

    def __init__(self, rate: float, burst: int, start: float, *, delay: bool = False) -> None:
        self._rate = rate
        self._burst = burst
        self._excess = 0.0
        self._last = start
        self._delay = delay
        self.wait = 0.0  # seconds the last admitted request waits before it is passed on

    def admit(self, now: float) -> tuple[bool, dict[str, str]]:
        self._excess = max(0.0, self._excess - (now - self._last) * self._rate)
        self._last = now
        if self._excess + 1.0 > self._burst + 1.0:
            return False, {}
        self.wait = self._excess / self._rate if self._delay else 0.0
        self._excess += 1.0
        return True, {}
