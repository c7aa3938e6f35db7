"""One run, stage by stage: inputs -> plan -> submit -> journal -> results.

discover + inspect inputs    (exit 2 before any request on a bad file or column)
lock the results file        (exit 2 if another live run holds it)
replay the journal           (rows left in flight by a killed run become `unknown`)
plan: validate every row     (first pass, spilled to <results>.work/)
submit the rows to send      (second pass; signals stop it, account errors abort it)
render results, compact the journal
"""

from __future__ import annotations

import asyncio
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import structlog

from . import loader, report, results
from .client import ZyntroClient
from .config import Config, Credentials
from .errors import AbortError, LedgerError
from .ledger import Journal, RunLock, compact, dangling_outcomes, journal_path, replay
from .limiter import RateLimiter
from .models import Outcome
from .plan import Plan, build_plan, make_workdir
from .submit import RetryPolicy, SubmitStats, Submitter

log = structlog.get_logger("si_ingest.run")

EXIT_INTERRUPTED = 130


@dataclass
class RunResult:
    summary: report.Summary
    plan: Plan
    stats: SubmitStats | None
    exit_code: int
    abort: AbortError | None = None
    interrupted: bool = False


async def run(inputs: list[Path], config: Config, credentials: Credentials | None) -> RunResult:
    """Run the pipeline once. `credentials` None means a dry run (validate only)."""
    dry_run = credentials is None or config.run.dry_run
    files = loader.inspect(loader.discover(inputs), config.columns, config.default_org_id)
    dest = config.run.results
    if not dest.parent.exists():
        raise LedgerError(f"the folder of the results file {dest} does not exist")
    with RunLock(dest):
        jpath = journal_path(dest)
        state, in_flight, valid = replay(jpath)
        journal = Journal(jpath, fsync=config.run.fsync)
        if in_flight:
            log.warning(
                "journal.unanswered",
                rows=len(in_flight),
                detail="rows a killed run left in flight are now `unknown`; rerun with --resend-unknown to send them",
            )
        dangling = dangling_outcomes(in_flight)
        if not dry_run:
            journal.open(valid)
            for outcome in dangling:
                journal.outcome(outcome)
            journal.flush()
        state = _with(state, dangling)
        workdir = make_workdir(dest)
        try:
            plan = build_plan(files, state, config, workdir)
            log.info(
                "plan.ready",
                rows=plan.rows,
                invalid=plan.invalid,
                duplicate=plan.duplicate,
                settled_earlier=plan.settled,
                to_send=plan.to_send,
                files=len(files),
            )
            stats: SubmitStats | None = None
            interrupted = False
            if not dry_run and plan.to_send:
                assert credentials is not None
                stats, interrupted = await _submit(plan, config, credentials, journal)
            if not dry_run:
                journal.close()
                if journal.error is not None:
                    raise journal.error
                state, _, _ = replay(jpath)
            results.render(plan, state, dest)
            if not dry_run:
                compact(jpath, state)
        finally:
            journal.close()
            shutil.rmtree(workdir, ignore_errors=True)
    summary = report.summarize(dest)
    abort = stats.abort if stats else None
    code = abort.exit_code if abort else EXIT_INTERRUPTED if interrupted else summary.exit_code
    log.info(
        "run.summary",
        results=str(dest),
        rows=summary.total,
        **{k: v for k, v in summary.by_status.items() if v},
        requests=stats.requests if stats else 0,
        retries=stats.retries if stats else 0,
        seconds=round(stats.seconds, 2) if stats else 0.0,
        requests_per_s=round(stats.per_second, 1) if stats else 0.0,
        exit_code=code,
    )
    return RunResult(summary, plan, stats, code, abort, interrupted)


async def _submit(plan: Plan, config: Config, credentials: Credentials, journal: Journal) -> tuple[SubmitStats, bool]:
    stop = asyncio.Event()
    limiter = RateLimiter(config.run.rate)
    retry = RetryPolicy(max_attempts=config.run.max_attempts, base=config.run.backoff_base, cap=config.run.backoff_cap)
    loop = asyncio.get_running_loop()
    signals = 0
    task: asyncio.Task[SubmitStats] | None = None

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.warning(
                "run.stopping",
                signal=signal.Signals(signum).name,
                detail="finishing the requests in flight; signal again to stop at once",
            )
            stop.set()
        elif task is not None:
            log.warning("run.stopping_now", signal=signal.Signals(signum).name)
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with ZyntroClient(
            config.api.base_url,
            credentials,
            concurrency=config.run.concurrency,
            connect_timeout=config.api.connect_timeout,
            read_timeout=config.api.read_timeout,
        ) as client:
            submitter = Submitter(client, limiter, journal, concurrency=config.run.concurrency, retry=retry, stop=stop)
            log.info(
                "submit.start",
                url=client.url,
                rows=plan.to_send,
                rate=config.run.rate,
                concurrency=config.run.concurrency,
            )
            task = asyncio.ensure_future(submitter.run(plan.rows_to_send(), plan.to_send))
            try:
                stats = await task
            except asyncio.CancelledError:
                if signals < 2:
                    raise
                stats = submitter.stats
            except BaseExceptionGroup as group:
                failure = _first(group, LedgerError)
                if failure is None:
                    raise
                raise failure from None
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return stats, signals > 0


def _first(group: BaseExceptionGroup, kind: type[BaseException]) -> BaseException | None:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = _first(exc, kind)
            if found is not None:
                return found
        elif isinstance(exc, kind):
            return exc
    return None


def _with(state: pl.DataFrame, outcomes: list[Outcome]) -> pl.DataFrame:
    """The state with `outcomes` applied on top (the last record of a key wins)."""
    if not outcomes:
        return state
    extra = pl.DataFrame(
        {
            "row_key": [o.row_key for o in outcomes],
            "status": [o.status.value for o in outcomes],
            "sir_id": [o.sir_id for o in outcomes],
            "error_code": [o.error_code for o in outcomes],
            "error_message": [o.error_message for o in outcomes],
            "attempts": [o.attempts for o in outcomes],
            "http_status": [o.http_status for o in outcomes],
            "updated_at": [o.updated_at for o in outcomes],
        },
        schema=state.schema,
    )
    return pl.concat([state, extra]).unique("row_key", keep="last", maintain_order=True)
