import asyncio
import random

import pytest

from pipeline.limiter import AUTO_START, JITTER, RateLimiter, steady_rate
from pipeline.sandbox.app import peak_per_second

from .virtual_clock import run_virtual


async def acquisitions(limiter: RateLimiter, count: int, workers: int) -> list[float]:
    loop = asyncio.get_running_loop()
    times: list[float] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await limiter.acquire()
            times.append(loop.time())

    await asyncio.gather(*(worker() for _ in range(workers)))
    return times


@pytest.mark.parametrize("rate", [1.0, 2.5, 10.0, 40.0, 250.0, 1000.0])
def test_ceiling_holds_in_every_window_and_steady_rate_is_high(rate):
    count = int(rate * 6) + 5
    times = run_virtual(acquisitions(RateLimiter(rate), count, workers=32))
    assert len(times) == count
    # the first second included: aiolimiter alone would let ~2x rate through here
    assert peak_per_second(times) <= rate
    span = times[-1] - times[0]
    if rate == int(rate):
        assert (count - 1) / span >= 0.9 * rate
    # the network may bunch requests by up to JITTER: still no window over the rate at the server
    rng = random.Random(rate)
    assert peak_per_second([t + rng.uniform(0, JITTER) for t in times]) <= rate


def test_steady_rate_is_at_least_ninety_percent():
    for rate in (1, 5, 10, 40, 100, 1000, 5000):
        assert 0.9 * rate <= steady_rate(rate) < rate


def test_pause_holds_every_worker():
    async def scenario() -> list[float]:
        limiter = RateLimiter(100.0)
        loop = asyncio.get_running_loop()
        await limiter.acquire()
        limiter.pause(3.0)
        start = loop.time()
        times = await acquisitions(limiter, 5, workers=5)
        return [t - start for t in times]

    assert min(run_virtual(scenario())) >= 3.0


def test_auto_mode_backs_off_on_429_and_regrows():
    async def scenario() -> tuple[float, float, float]:
        limiter = RateLimiter("auto")
        loop = asyncio.get_running_loop()
        await asyncio.sleep(1.5)
        limiter.throttled()
        after_throttle = limiter.rate
        limiter.throttled()  # a burst of 429s within a second counts once
        assert limiter.rate == after_throttle
        await asyncio.sleep(3)
        for _ in range(5):
            limiter.succeeded()
            await asyncio.sleep(1.01)
        del loop
        return after_throttle, limiter.rate, limiter._limiter.max_rate / limiter._limiter.time_period

    after_throttle, regrown, steady = run_virtual(scenario())
    assert after_throttle == pytest.approx(AUTO_START * 0.7)
    assert regrown > after_throttle * 1.5
    assert steady == pytest.approx(steady_rate(regrown))


def test_fixed_rate_ignores_throttle_signals():
    async def scenario() -> float:
        limiter = RateLimiter(40.0)
        await asyncio.sleep(2)
        limiter.throttled()
        limiter.succeeded()
        return limiter.rate

    assert run_virtual(scenario()) == 40.0
