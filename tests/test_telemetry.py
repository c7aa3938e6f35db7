"""The run's sending figures: rates end where sending ends, memory stays bounded."""

from __future__ import annotations

import pytest

from pipeline.telemetry import CREATED, LATENCY_SAMPLES, THROTTLED, Telemetry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_mean_rate_is_the_sendings_not_the_render_after_it():
    # the summary is made after the results file is rendered; on main that time counted as
    # sending, and the summary said 37.8/s for a run sent at 39/s
    clock = Clock()
    t = Telemetry(clock, seed=1)
    for _ in range(40):
        t.answered(t.sent(40.0), CREATED)
        clock.now += 0.025
    t.stop()
    clock.now += 5.0  # rendering the results file
    assert t.seconds == pytest.approx(1.0) and t.mean_rate() == pytest.approx(40.0)
    t.stop()  # a second stop keeps the first end
    assert t.seconds == pytest.approx(1.0)


def test_counts_bins_and_a_bounded_latency_sample():
    clock = Clock()
    t = Telemetry(clock, seed=2)
    assert t.seconds == 0.0 and t.mean_rate() == 0.0
    for i in range(LATENCY_SAMPLES + 500):
        sent = t.sent(100.0)
        clock.now += 0.001
        t.answered(sent, THROTTLED if i % 10 == 0 else CREATED)
    assert t.requests == LATENCY_SAMPLES + 500 and len(t._latencies) == LATENCY_SAMPLES
    assert t.kinds[THROTTLED] == (LATENCY_SAMPLES + 500 + 9) // 10
    assert t.peak_rate() >= 990 and t.seconds > 10


def test_a_run_held_to_its_ceiling_never_reads_above_it():
    """11 requests at 5/s read "mean 5.3/s" beside "limit 5/s", and ten sent in one burst
    "mean 1949/s" (found by a review, h9b)."""
    clock = Clock()
    t = Telemetry(clock, seed=3)
    for second in range(3):  # a sliding window of 5/s: 5 at once, 5 a second later, then 1
        clock.now = 100.0 + second
        for _ in range(5 if second < 2 else 1):
            t.answered(t.sent(5.0), CREATED)
    clock.now += 0.07  # the last answer
    t.stop()
    assert t.requests == 11 and t.mean_rate() == pytest.approx(5.0)
    burst = Telemetry(Clock(), seed=4)
    for _ in range(10):
        burst.answered(burst.sent(200.0), CREATED)
    burst.stop()
    assert burst.mean_rate() == 10.0
