"""What a run's sending looked like: per-second counts, latencies, rates (bounded memory).

One bin per second since the first request (a 6-hour run is 21,600 small lists) and a
reservoir of LATENCY_SAMPLES latencies (Algorithm R), so nothing grows with the rows sent.
Read by the progress line, the end-of-run summary, `--summary-json` and the HTML report.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

LATENCY_SAMPLES = 10_000
CREATED, THROTTLED, ERROR, OTHER = "created", "throttled", "error", "other"


class Telemetry:
    def __init__(self, clock: Callable[[], float], seed: int | None = None) -> None:
        self._clock = clock
        self._origin: float | None = None
        self._end: float | None = None
        self._last_sent: float | None = None
        self._bins: dict[int, list[float]] = {}  # second -> [requests, created, throttled, errors, rate limit]
        self._latencies: list[float] = []
        self._answered = 0
        self._rng = random.Random(seed)
        self.requests = 0
        self.never_connected = 0  # requests that failed before they had a connection: nothing left
        self.kinds: Counter[str] = Counter()

    def sent(self, rate_limit: float) -> float:
        """A request is leaving; returns its send time (pass it back to `answered`)."""
        now = self._clock()
        if self._origin is None:
            self._origin = now
        self._last_sent = now
        self.requests += 1
        row = self._bin(now)
        row[0] += 1
        row[4] = rate_limit
        return now

    def answered(self, sent_at: float, kind: str) -> None:
        """The answer to a request sent at `sent_at`: CREATED, THROTTLED, ERROR or OTHER."""
        now = self._clock()
        self.kinds[kind] += 1
        row = self._bin(now)
        if kind == CREATED:
            row[1] += 1
        elif kind == THROTTLED:
            row[2] += 1
        elif kind == ERROR:
            row[3] += 1
        latency = (now - sent_at) * 1000.0
        self._answered += 1
        if len(self._latencies) < LATENCY_SAMPLES:
            self._latencies.append(latency)
        else:
            slot = self._rng.randrange(self._answered)
            if slot < LATENCY_SAMPLES:
                self._latencies[slot] = latency

    def _bin(self, now: float) -> list[float]:
        second = int(now - (self._origin if self._origin is not None else now))
        row = self._bins.get(second)
        if row is None:
            previous = self._bins.get(second - 1)
            row = self._bins[second] = [0, 0, 0, 0, previous[4] if previous else 0.0]
        return row

    def stop(self) -> None:
        """Sending is over: `seconds` (and so `mean_rate`) stop counting here."""
        if self._end is None:
            self._end = self._clock()

    @property
    def seconds(self) -> float:
        """From the first request to `stop` (or to now while sending)."""
        if self._origin is None:
            return 0.0
        return max(0.0, (self._end if self._end is not None else self._clock()) - self._origin)

    def current_rate(self, window: int = 3) -> float:
        """Requests per second over the last `window` whole seconds."""
        if self._origin is None:
            return 0.0
        now = int(self._clock() - self._origin)
        seconds = [self._bins.get(s, [0])[0] for s in range(max(0, now - window), now)]
        return sum(seconds) / len(seconds) if seconds else float(self.requests)

    def mean_rate(self) -> float:
        """The pace of sending: (n - 1) / the span from the first request to the last, so a run
        held to a ceiling of N never reads above N (n / the span to the last answer had printed
        "mean 5.3/s" beside "limit 5/s", and 1949/s for ten requests sent in one burst: found by
        a review, h9b); where every request left within one second, how many left."""
        if self._origin is None or self._last_sent is None:
            return 0.0
        span = self._last_sent - self._origin
        return (self.requests - 1) / span if span >= 1.0 else float(self.requests)

    def peak_rate(self) -> float:
        """The most requests sent within one second (whole-second bins)."""
        return max((row[0] for row in self._bins.values()), default=0)

    def latency_ms(self) -> dict[str, float | None]:
        if not self._latencies:
            return {"p50": None, "p90": None, "p99": None, "max": None}
        ordered = sorted(self._latencies)

        def at(share: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2)

        return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(ordered[-1], 2)}

    def timeline(self) -> list[dict[str, Any]]:
        if not self._bins:
            return []
        last = max(self._bins)
        rows = []
        rate = 0.0
        for second in range(last + 1):
            row = self._bins.get(second)
            if row is not None:
                rate = row[4]
            requests, created, throttled, errors = (int(v) for v in row[:4]) if row else (0, 0, 0, 0)
            rows.append(
                {
                    "t": second,
                    "requests": requests,
                    "created": created,
                    "throttled": throttled,
                    "errors": errors,
                    "rate_limit": round(rate, 2),
                }
            )
        return rows
