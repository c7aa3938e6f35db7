"""Run the CLI with timers around the planner's stages: where time and memory go.

    python bench/_stage_probe.py OUT.json validate FILE --results R.csv

Wraps (from the outside, nothing in pipeline/ changes) the ledger open, pass 1 (load,
validate, key, spill), pass 2 (the partition lookup, planning and final), pass 3 (decide,
bodies), the results render and the report, and within them the CSV reader, validate(),
the spills and the ledger partition reads. A thread polls /proc/self/status every 20 ms and
charges the peak RssAnon to every stage running. Times and peaks are inclusive of nested
stages (the report subtracts nested times where it says so). The CLI's own behaviour and exit code are unchanged.
"""

from __future__ import annotations

import atexit
import functools
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Stages running, per thread (the planner reads ahead and writes behind on threads: background.py)
MAIN = threading.get_ident()
STACKS: dict[int, list[str]] = {MAIN: ["startup"]}
TIMES: dict[str, float] = {}
CALLS: dict[str, int] = {}
PEAKS: dict[str, int] = {}
T0 = time.perf_counter()


def _anon_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def _poll() -> None:
    while True:
        kb = _anon_kb()
        running = {stage for stack in list(STACKS.values()) for stage in list(stack)}
        for stage in running:  # every stage running now, on any thread: peaks are inclusive, like the times
            if kb > PEAKS.get(stage, 0):
                PEAKS[stage] = kb
        time.sleep(0.02)


class _Stage:
    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        _stack().append(self.name)
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        TIMES[self.name] = TIMES.get(self.name, 0.0) + time.perf_counter() - self.start
        CALLS[self.name] = CALLS.get(self.name, 0) + 1
        _stack().pop()


def _stack() -> list[str]:
    return STACKS.setdefault(threading.get_ident(), [])


def timed(name: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        label = name(*args, **kwargs) if callable(name) else name
        with _Stage(label):
            return fn(*args, **kwargs)

    return wrapper


def timed_iter(name: str, fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """Charge the time spent producing each item of a generator to `name`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with _Stage(name):
            it = iter(fn(*args, **kwargs))
        while True:
            with _Stage(name):
                try:
                    item = next(it)
                except StopIteration:
                    return
            yield item

    return wrapper


def _inside(name: str, *outers: str) -> Callable[..., str]:
    """A label `<outer>.<name>` for the innermost of `outers` running (or `other.<name>`)."""

    def label(*args: Any, **kwargs: Any) -> str:
        # a polars thread pulls the results' batches: then the main thread says which pass it is
        for stage in [*reversed(_stack()), *reversed(STACKS[MAIN])]:
            if stage in outers:
                return f"{stage}.{name}"
        return f"other.{name}"

    return label


def _wrap(owner: Any, attr: str, wrapper: Callable[[Callable[..., Any]], Any]) -> None:
    """Replace owner.attr by wrapper(original), if main has it (stage names move with the code)."""
    original = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
    if original is None:
        print(f"stage probe: no {getattr(owner, '__name__', owner)}.{attr}; not timed", file=sys.stderr)
        return
    if isinstance(original, classmethod):
        setattr(owner, attr, classmethod(wrapper(original.__func__)))
    else:
        setattr(owner, attr, wrapper(original))


def install() -> None:
    """Timers around the stages of pass_one.py / plan.py / results.py (names as of this commit)."""
    from pipeline import loader, pass_one, plan, report, results, runner
    from pipeline.ledger import fold, snapshot, store

    passes = ("pass1", "pass2", "pass3", "render", "send")
    _wrap(store.Ledger, "open", lambda f: timed("ledger.open", f))
    _wrap(runner, "build_plan", lambda f: timed("plan", f))
    _wrap(loader, "batches", lambda f: timed_iter("pass1.read_csv", f))
    _wrap(pass_one, "_write", lambda f: timed("pass1.spill", f))
    _wrap(pass_one, "write_run", lambda f: timed("pass1.write_key_run", f))
    _wrap(plan.Plan, "_lookup", lambda f: timed(lambda self, view, tag: f"pass2.lookup.{tag}", f))
    _wrap(plan, "_write_verdicts", lambda f: timed("lookup.write_verdicts", f))
    _wrap(fold.Fold, "partition", lambda f: timed("lookup.ledger_partition", f))
    _wrap(snapshot.Snapshot, "partition", lambda f: timed("lookup.snapshot_read_verify", f))
    _wrap(plan.Plan, "_count", lambda f: timed("pass3", f))
    _wrap(plan.OrderedRuns, "upto", lambda f: timed(_inside("merge", *passes), f))
    _wrap(plan.Plan, "_decide", lambda f: timed(_inside("decide", *passes), f))
    _wrap(plan.Plan, "rows_to_send", lambda f: timed_iter("send", f))
    _wrap(results, "render", lambda f: timed("render", f))
    _wrap(report, "summarize", lambda f: timed("report.summarize", f))


def dump(out: Path) -> None:
    end = time.perf_counter() - T0
    out.write_text(
        json.dumps({"total": end, "times": TIMES, "calls": CALLS, "peak_anon_kb": PEAKS}, indent=1, sort_keys=True)
    )


def main() -> None:
    out = Path(sys.argv[1])
    threading.Thread(target=_poll, daemon=True).start()
    with _Stage("import"):
        from pipeline import cli

        install()
    atexit.register(dump, out)
    cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
