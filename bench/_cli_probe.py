"""`si-ingest` run in-process with probes attached from outside (nothing in pipeline/ is changed).

    python -c "from bench._cli_probe import main; main()" PROBE.json [--fsync-delay S] [--lag] -- run ...
- `--fsync-delay S`: `os.fsync` sleeps S seconds, then fsyncs for real: every journal commit
  (and every other fsync of the run) is a disk stall of S.
- `--lag`: while the rows are being sent (around `pipeline.sending.submit`), a task on the
  run's event loop sleeps LAG_TICK in a loop and records how late it wakes (loop lag).
- always: fsync count and seconds spent in it, the CPU time of the loop's thread while sending,
  full garbage collections (gc.callbacks), CPU seconds per thread at exit, the monotonic times
  the sending phase began and ended, the process's start and the CLI's exit code, written to
  PROBE.json when the CLI exits.
- experiments: `--gc-freeze`, `--gc-threshold A,B,C`, `--switch-interval S` as sending begins.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LAG_TICK = 0.010  # seconds the lag task sleeps each time
PERF_SEND = [0.0, 0.0]  # perf_counter when sending began and ended
LAG_AT: list[float] = []  # perf_counter when each lag sample was taken


async def _lag_monitor(lags: list[float]) -> None:
    while True:
        before = time.perf_counter()
        await asyncio.sleep(LAG_TICK)
        after = time.perf_counter()
        lags.append(max(0.0, after - before - LAG_TICK))  # uvloop times from a cached clock: early wakes count 0
        LAG_AT.append(after)


def _threads_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each thread of this process still alive, by thread name."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def main() -> None:
    started = time.monotonic()
    argv = sys.argv[1:]
    split = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--fsync-delay", type=float, default=0.0)
    parser.add_argument("--lag", action="store_true")
    parser.add_argument("--trace-sends", action="store_true", help="record when each request is handed to the client")
    parser.add_argument("--trace-rate", action="store_true", help="record every rate change and 429 (monotonic)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="MODULE.NAME=VALUE",
        help="set a constant in pipeline before the run, e.g. adaptive.C=1.6 (an experiment)",
    )
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() as sending begins (an experiment)")
    parser.add_argument("--switch-interval", type=float, help="sys.setswitchinterval as sending begins (an experiment)")
    parser.add_argument("--gc-threshold", help="gc.set_threshold(A,B,C) as sending begins (an experiment)")
    opts = parser.parse_args(argv[:split])
    cli_argv = argv[split + 1 :]
    probe: dict[str, Any] = {"started": started, "fsyncs": 0, "fsync_s": 0.0}
    real_fsync = os.fsync

    def counted_fsync(fd: int) -> None:
        before = time.perf_counter()
        if opts.fsync_delay > 0:
            time.sleep(opts.fsync_delay)
        real_fsync(fd)
        probe["fsyncs"] += 1
        probe["fsync_s"] += time.perf_counter() - before

    os.fsync = counted_fsync

    from pipeline import cli, sending

    for assignment in opts.set:
        name, value = assignment.split("=", 1)
        module, attr = name.rsplit(".", 1)
        setattr(importlib.import_module(f"pipeline.{module}"), attr, float(value))
    rates: list[tuple[float, float]] = []
    throttles: list[tuple[float, float]] = []  # (when the 429 came back, when its request left)
    sends: list[float] = []
    if opts.trace_sends:
        from pipeline import client

        real_send = client.ZyntroClient.send

        async def traced_send(self: Any, *args: Any) -> Any:
            sends.append(time.monotonic())
            return await real_send(self, *args)

        client.ZyntroClient.send = traced_send  # type: ignore[method-assign]
    if opts.trace_rate:
        from pipeline import adaptive, limiter

        real_set_rate = limiter.RateLimiter.set_rate
        real_throttled = adaptive.Controller.throttled

        def set_rate(self: Any, rate: float) -> None:
            real_set_rate(self, rate)
            rates.append((time.monotonic(), self.rate))

        def throttled(self: Any, sent_at: float, retry_after: float | None) -> None:
            throttles.append((time.monotonic(), sent_at))
            real_throttled(self, sent_at, retry_after)

        limiter.RateLimiter.set_rate = set_rate  # type: ignore[method-assign]
        adaptive.Controller.throttled = throttled  # type: ignore[method-assign]

    real_submit = sending.submit
    lags: list[float] = []

    async def timed_submit(*args: Any, **kwargs: Any) -> Any:
        monitor = asyncio.ensure_future(_lag_monitor(lags)) if opts.lag else None
        if opts.gc_freeze:  # an experiment: the objects of imports and planning out of every collection
            gc.freeze()
        if opts.switch_interval:
            sys.setswitchinterval(opts.switch_interval)
        if opts.gc_threshold:
            gc.set_threshold(*(int(x) for x in opts.gc_threshold.split(",")))
        probe["send_start"] = time.monotonic()
        PERF_SEND[0] = time.perf_counter()
        cpu_start = time.thread_time(), time.process_time()
        try:
            return await real_submit(*args, **kwargs)
        finally:
            probe["send_end"] = time.monotonic()
            PERF_SEND[1] = time.perf_counter()
            probe["send_cpu_loop_s"] = time.thread_time() - cpu_start[0]  # the event loop's thread
            probe["send_cpu_process_s"] = time.process_time() - cpu_start[1]
            if monitor is not None:
                monitor.cancel()

    sending.submit = timed_submit
    gc_pauses: list[tuple[float, int, float]] = []  # (perf_counter at start, generation, seconds)
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pauses.append((gc_started[0], info["generation"], time.perf_counter() - gc_started[0]))

    gc.callbacks.append(on_gc)
    code: int | str | None = None
    try:
        cli.main(cli_argv)
    except SystemExit as exc:
        code = exc.code
        raise
    finally:
        probe["exit_code"] = code
        probe["ended"] = time.monotonic()
        probe["lags"] = lags
        probe["lag_at"] = LAG_AT
        probe["gc"] = gc_pauses
        probe["rates"] = rates
        probe["sends"] = sends
        probe["throttles"] = throttles
        probe["perf_send"] = [PERF_SEND[0], PERF_SEND[1]]
        probe["threads_cpu_s"] = _threads_cpu()
        opts.out.write_bytes(orjson.dumps(probe))


if __name__ == "__main__":
    main()
