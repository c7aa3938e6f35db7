"""Sending a plan: the submit loop under the run's signals, then the journal folded.

`send_plan` is the runner's "submit" stage (runner.py): it opens the ledger's journal, sends
the plan's rows through the org lanes (lanes.py) and the Submitter (submit.py), and folds the
journal into the ledger even when sending failed, so what the run learned is never lost. A
journal lost while sending (deleted, replaced, unwritable) stops the run; its records are
saved beside it and the error names `si-ingest ledger repair`.

Signals while sending: the first SIGINT/SIGTERM/SIGHUP stops taking new rows and finishes the
requests in flight (exit 130); a second stops at once, and the rows in flight are recorded
`unknown` (INTERRUPTED), as the README says. The count goes on after sending (stopping.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from . import results
from .config import Config, Credentials
from .errors import LedgerError
from .lanes import open_lanes  # light: aiohttp loads inside open_lanes, only for a run that sends
from .ledger import Journal, Ledger
from .limiter import RateLimiter, StopEvent
from .plan import Plan
from .progress import display_for
from .stopping import RunSignals
from .submit import RetryPolicy, SubmitStats, Submitter

if TYPE_CHECKING:
    from .client import ZyntroClient

log = structlog.get_logger("si_ingest.run")


async def send_plan(
    plan: Plan, config: Config, credentials: Credentials, ledger: Ledger, dest: Path, signals: RunSignals
) -> SubmitStats | None:
    """Submit with the ledger's journal, then fold it; a lost journal still gets its results.
    Whether a signal came is `signals.count` (stopping.py)."""
    journal = ledger.journal(fsync=config.run.fsync)
    stats: SubmitStats | None = None
    failure: LedgerError | None = None
    try:
        if plan.to_send:
            with frozen_heap():
                stats = await submit(plan, config, credentials, journal, signals)
    except LedgerError as exc:
        failure = exc
    except Exception:  # a bug (exit 4): keep what this run learned, then let it surface
        with contextlib.suppress(Exception):
            ledger.finish(journal)
            results.render(plan, ledger.view, dest)
        raise
    recovered = ledger.finish(journal)
    if recovered is not None:
        results.render(plan, ledger.view, dest)
        raise LedgerError(
            f"{failure or 'the journal was lost'}. This run's records were saved to {recovered} and the results "
            f"file shows every row sent; before the next run, `si-ingest ledger repair {dest}` rebuilds the "
            "ledger from them"
        )
    if failure is not None:
        raise failure
    return stats


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """While sending, the objects left by imports and planning are out of the cyclic GC's reach.

    Each full collection walked all of them: six per 20,000-row run, 24-37 ms each, on the
    event loop, which put the loop's p99 lag at 17-20 ms. With `gc.freeze()` as sending begins
    it was 1.2-2.2 ms (bench/RESULTS.md, Rate, section 3). They are unfrozen afterwards, so a
    library caller's process collects them as before.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def submit(
    plan: Plan, config: Config, credentials: Credentials, journal: Journal, signals: RunSignals
) -> SubmitStats:
    stop = StopEvent()
    retry = RetryPolicy(max_attempts=config.run.max_attempts, base=config.run.backoff_base, cap=config.run.backoff_cap)
    loop = asyncio.get_running_loop()
    task: asyncio.Task[SubmitStats] | None = None
    signals.sent = True  # from here a signal lets the requests in flight finish (stopping.py)

    def on_signal(signum: int) -> None:
        signals.count += 1
        if signals.count == 1:
            log.warning(
                "run.stopping",
                signal=signal.Signals(signum).name,
                detail="finishing the requests in flight; signal again to stop at once",
            )
            stop.set()
        elif task is not None:
            log.warning("run.stopping_now", signal=signal.Signals(signum).name)
            task.cancel()

    for signum in signals.handled:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with open_lanes(config, credentials, stop) as (default, orgs):
            limiter = default.limiter if default is not None else RateLimiter(1.0, stop)
            display = display_for(plan.to_send, config.run.log_format, config.run.progress_every)
            submitter = Submitter(
                default.client if default is not None else None,
                limiter,
                journal,
                concurrency=config.run.concurrency,
                retry=retry,
                stop=stop,
                controller=default.controller if default is not None else None,
                breaker=config.run.breaker,
                on_progress=display,
                progress_every=display.every,
                lanes=orgs,
            )
            log.info(
                "submit.start",
                url=config.api.base_url.rstrip("/") + "/addSIRequest",
                rows=plan.to_send,
                rate=config.run.rate,
                concurrency=config.run.concurrency,
                orgs=sorted(orgs) or None,
                proxy=_shown_proxy(default.client if default is not None else None),
            )
            task = asyncio.ensure_future(submitter.run(plan.rows_to_send(), plan.to_send))
            with display:
                try:
                    stats = await task
                except asyncio.CancelledError:
                    if signals.count < 2:
                        raise
                    stats = submitter.stats
                except BaseExceptionGroup as group:
                    failure = _first(group, LedgerError)
                    if failure is None:
                        raise
                    raise failure from None
            stats.lanes = dict(orgs)
    finally:
        for signum in signals.handled:
            loop.remove_signal_handler(signum)  # which leaves the default action: the run's handler again
        signals.reinstall()
    return stats


def _shown_proxy(client: ZyntroClient | None) -> str | None:
    """The proxy requests go through, for the log (its credentials, if any, are not in it)."""
    return str(client.proxy) if client is not None and client.proxy is not None else None


def _first(group: BaseExceptionGroup, kind: type[BaseException]) -> BaseException | None:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = _first(exc, kind)
            if found is not None:
                return found
        elif isinstance(exc, kind):
            return exc
    return None
