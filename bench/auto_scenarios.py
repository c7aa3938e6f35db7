"""`--rate auto` against hard gateways, on a virtual clock: the controller vs itself blind to the wait.

    .venv/bin/python bench/auto_scenarios.py          # ~1 min of CPU, prints a table (nothing written)

The controller reads a queue from the answers' wait (pipeline/adaptive.py's docstring). That
helps behind a gateway that delays instead of refusing and costs goodput to an API whose own
latency jumps. Each scenario runs twice in this process, with the wait read and with it ignored
(EARLY_EXTRA and QUEUE_EXTRA out of reach, timeouts neither cut nor grow: the controller as it was
before 5ea4851), on the same simulated servers (tests/test_adaptive.py's), so the ratio is the
decision's price or gain. Figures: goodput (answers/s at the server) over the steady part, and
requests that ran into the 5 or 10 s read timeout (each a row `unknown` in a real run).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import adaptive  # noqa: E402
from pipeline.adaptive import Controller  # noqa: E402
from tests.test_adaptive import DelayingQueue, SlidingWindow, run_scenario  # noqa: E402


class Blind(Controller):
    """The controller before it read the wait: timeouts neither grow nor cut the rate."""

    def timed_out(self, sent_at: float) -> None:
        return None


def run(blind: bool, **kwargs: object) -> tuple[list[float], int]:
    """tests/test_adaptive.py's scenario, with the controller reading the wait or blind to it."""
    saved = adaptive.EARLY_EXTRA, adaptive.QUEUE_EXTRA
    if blind:
        adaptive.EARLY_EXTRA = adaptive.QUEUE_EXTRA = 1e9
    try:
        return run_scenario(controller=Blind if blind else Controller, **kwargs)  # type: ignore[arg-type]
    finally:
        adaptive.EARLY_EXTRA, adaptive.QUEUE_EXTRA = saved


def goodput(accepted: list[float], start: float, end: float) -> float:
    return sum(1 for t in accepted if start <= t < end) / (end - start)


def spikes(period: float, high: float) -> Callable[[float], float]:
    return lambda t: high if int(t // period) % 2 == 1 else 0.05


SCENARIOS: list[tuple[str, dict[str, object], tuple[float, float]]] = [
    ("100/s window, API latency 0.05/1.5 s every 5 s", {"seconds": 120, "workers": 200,
     "latency": spikes(5, 1.5), "window": "window"}, (20, 120)),
    ("100/s window, API latency 0.05/1.5 s every 10 s", {"seconds": 120, "workers": 200,
     "latency": spikes(10, 1.5), "window": "window"}, (20, 120)),
    ("100/s window, API latency 0.05/1.5 s every 20 s", {"seconds": 120, "workers": 200,
     "latency": spikes(20, 1.5), "window": "window"}, (20, 120)),
    ("100/s window, every request hangs from 20 to 40 s", {"seconds": 90, "workers": 16,
     "hang": lambda t: 20 <= t < 40, "timeout": 10.0, "window": "window"}, (40, 50)),
    ("delaying queue 10/s, 100 workers", {"seconds": 120, "workers": 100, "queue": 10.0}, (30, 120)),
    ("delaying queue 5/s, 100 workers", {"seconds": 120, "workers": 100, "queue": 5.0}, (30, 120)),
    ("delaying queue 3/s, 16 workers", {"seconds": 120, "workers": 16, "queue": 3.0}, (30, 120)),
    ("delaying queue 2/s, 16 workers", {"seconds": 120, "workers": 16, "queue": 2.0}, (30, 120)),
]  # fmt: skip


def main() -> None:
    print("| scenario | goodput /s, reading the wait | blind | ratio | timeouts, reading | blind |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, spec, (start, end) in SCENARIOS:
        figures = []
        for blind in (False, True):
            kwargs = dict(spec)
            if kwargs.pop("window", None):
                kwargs["window"] = SlidingWindow(lambda t: 100)
            if "queue" in kwargs:
                kwargs["queue"] = DelayingQueue(float(kwargs["queue"]))  # type: ignore[arg-type]
            accepted, timed_out = run(blind=blind, **kwargs)  # type: ignore[arg-type]
            figures.append((goodput(accepted, start, end), timed_out))
        (ours, our_to), (base, base_to) = figures
        ratio = f"{ours / base:.2f}x" if base else "-"
        print(f"| {name} | {ours:.1f} | {base:.1f} | {ratio} | {our_to} | {base_to} |", flush=True)


if __name__ == "__main__":
    main()
