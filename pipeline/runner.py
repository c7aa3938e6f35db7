"""One run, stage by stage: inputs -> plan -> submit -> ledger -> results.

discover + inspect inputs    (exit 2 before any request on a bad file or column)
lock the results file        (exit 2 if another live run holds it)
open the ledger              (exit 2 if damaged or missing; a killed run's rows in flight become `unknown`)
check it against the results (exit 2 if it lost rows the results file shows sent: ledger/seal.py)
plan: validate every row     (passes over the input, spilled to <results>.work/)
submit the rows to send      (signals stop it, account errors abort it)
fold the journal, render the results
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from . import loader, report, results, stopping
from .adaptive import AUTO_START
from .config import Config, Credentials
from .entry import outcome_is
from .errors import (
    AbortError,
    ConfigError,
    InputError,
    Interrupted,
    LedgerDamaged,
    LedgerError,
    PipelineError,
    reason_of,
)
from .ledger import Ledger, LedgerPaths, RunLock, seal
from .ledger.store import same_file, sends_recorded
from .pass_one import build_plan
from .plan import Plan
from .sending import send_plan
from .stopping import RunSignals
from .submit import SubmitStats

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
    document: dict[str, Any] = field(default_factory=dict)  # the summary JSON (report.run_document)
    reports: list[Path] = field(default_factory=list)  # --summary-json / --report-html written


async def run(
    inputs: list[Path], config: Config, credentials: Credentials | None, *, new_ledger: bool = False
) -> RunResult:
    """Run the pipeline once. `credentials` None means a dry run (validate only)."""
    started, started_at = time.monotonic(), datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    dry_run = credentials is None or config.run.dry_run
    dest = config.run.results
    _check_not_in_an_input_folder(dest, inputs)
    found = loader.discover(inputs)
    for name in sorted(set(config.defaults) - {"*"} - {p.name for p in found}):
        # a typo in the file name had gone unnoticed (found by a review, h9b); on a night
        # without that export this is only news
        log.warning("config.defaults_unused", file=name, detail="[defaults] names a file that is not an input")
    files = loader.inspect(found, config.columns, config.default_org_id, config.defaults_for)
    _check_results_path(dest, files)
    _check_reports(config, files)
    signals = RunSignals()
    # over the whole run, the reports included: no moment is left to the default action (a
    # SIGTERM between the results and the reports had exited 130 without them: review h9a);
    # then, however the run ends, a signal is noted while its error or summary is printed
    # (one had replaced a failed run's error and advice with "interrupted": review h10)
    with contextlib.ExitStack() as ending:
        ending.callback(stopping.after_the_run)
        ending.enter_context(signals.installed())
        with RunLock(dest) as lock:
            lock.seal(*seal.carried(lock.previous))  # kept should this run stop before it seals (seal.py)
            paths = LedgerPaths(dest)
            workdir = lock.make_workdir()
            try:
                with _naming_the_way_forward(dest):
                    if dry_run and new_ledger:
                        _keep_the_record_of_sends(dest)
                    ledger = Ledger.open(dest, workdir, writable=False, new_ledger=new_ledger)
                    seal.before_sending(lock, paths, ledger.view, workdir, new_ledger=new_ledger, dry_run=dry_run)
                    if not dry_run:  # only now: a run refused above leaves every file as it was
                        ledger.prepare_to_append()
                        lock.hold_journal()  # the journal it will append to (maybe new): no other run may
                        if ledger.upgraded:
                            log.info(
                                "ledger.upgraded", detail="format 1 journal upgraded; the old one is kept beside it"
                            )
                    # a dry run may write its CSV results while it plans (result_rows.py)
                    prerender = dry_run and not dest.name.endswith(".parquet")
                    plan = build_plan(files, ledger.view, config, workdir, prerender=prerender)
                    sender = None if dry_run else credentials
                    counts, stats = await _send_and_render(
                        plan,
                        len(files),
                        config,
                        sender,
                        ledger,
                        lock,
                        dest,
                        signals,
                        seal_it=not (dry_run and new_ledger),
                    )
            finally:
                with signals.deferred(failing=sys.exc_info()[1] is not None):  # whole, whatever signal comes
                    shutil.rmtree(workdir, ignore_errors=True)
        interrupted = signals.count > 0
        summary = report.from_groups(dest, counts)
        abort = stats.abort if stats else None
        if dry_run:  # validate: 0 when no row is invalid or duplicate, so it can gate a scheduled run
            code = 0 if plan.invalid == 0 and plan.duplicate == 0 else 1
        else:
            code = abort.exit_code if abort else EXIT_INTERRUPTED if interrupted else summary.exit_code
        outcome_is(code)  # a signal from now on keeps a 2 or 3 (entry.late_exit_code)
        document = report.run_document(
            command="validate" if dry_run else "run",
            started_at=started_at,
            duration_s=time.monotonic() - started,
            results=dest,
            inputs=[f.path for f in files],
            exit_code=code,
            summary=summary,
            plan={
                "rows": plan.rows,
                "invalid": plan.invalid,
                "duplicate": plan.duplicate,
                "settled_earlier": plan.settled,
                "to_send": plan.to_send,
            },
            stats=stats,
            rate_mode="per org" if config.orgs else "auto" if config.run.rate == "auto" else "fixed",
            rate_limit=_final_rate(config, stats),
            aborted={"code": str(abort.code), "message": str(abort), "org_id": _org_of(abort, stats)}
            if abort
            else None,
            interrupted=interrupted,
            orgs=_org_summary(stats),
        )
        reports = _write_reports(document, summary, config)  # a signal now is noted (after a send)
        if signals.count and code in (0, 1):  # a signal after the results: all written, and interrupted
            code, interrupted = EXIT_INTERRUPTED, True
            document.update(exit_code=code, interrupted=True)
            if config.run.summary_json in reports:  # it had said exit 0, not interrupted (review h10)
                with contextlib.suppress(OSError):
                    report.write_document(document, config.run.summary_json)
        log.info(
            "run.summary",
            results=str(dest),
            rows=summary.total,
            **{k: v for k, v in summary.by_status.items() if v},
            requests=document["requests"],
            never_connected=document["never_connected"],
            retries=document["retries"],
            throttled=document["throttled"],
            seconds=document["duration_s"],
            requests_per_s=document["mean_rate"],
            peak_per_s=document["peak_rate"],
            exit_code=code,
        )
    return RunResult(summary, plan, stats, code, abort, interrupted, document, reports)


async def _send_and_render(
    plan: Plan,
    files: int,
    config: Config,
    credentials: Credentials | None,
    ledger: Ledger,
    lock: RunLock,
    dest: Path,
    signals: RunSignals,
    *,
    seal_it: bool = True,
) -> tuple[list[tuple[str | None, str | None, int]], SubmitStats | None]:
    """After planning: send (unless a dry run), then write the results and seal them."""
    if ledger.unanswered:
        log.warning(
            "journal.unanswered",
            rows=ledger.unanswered,
            detail="rows a killed run left in flight are now `unknown`; rerun with --resend-unknown to send them",
        )
    log.info(
        "plan.ready",
        rows=plan.rows,
        invalid=plan.invalid,
        duplicate=plan.duplicate,
        settled_earlier=plan.settled,
        to_send=plan.to_send,
        files=files,
    )
    stats = None
    if credentials is not None:  # None: a dry run
        _check_keys(plan, config, credentials)
        stats = await send_plan(plan, config, credentials, ledger, dest, signals)
    counts = results.render(plan, ledger.view, dest)
    if seal_it:
        lock.seal(seal.seal_line(ledger.paths, ledger.view.swept_keys))
    else:  # a dry run that disregards the ledger: what guards sends stays as it was (seal.before_sending)
        lock.seal(*seal.carried(lock.previous))
    return counts, stats


def _org_of(abort: AbortError, stats: SubmitStats | None) -> str | None:
    lanes = stats.lanes if stats is not None else {}
    return next((org_id for org_id, lane in lanes.items() if lane.abort is abort), None)


def _check_keys(plan: Plan, config: Config, credentials: Credentials) -> None:
    """Before any request: every org with rows to send has an API key."""
    if credentials.api_key is not None:
        return
    unkeyed = sorted(plan.orgs - set(config.orgs))
    if unkeyed:
        raise ConfigError(
            f'rows of org {", ".join(unkeyed)} have no API key: add [orgs."{unkeyed[0]}"] with api_key_env '
            f"to the config, or set {config.credentials.api_key_env} for the orgs without an entry"
        )


def _org_summary(stats: SubmitStats | None) -> dict[str, Any]:
    """Per org of a multi-org run: requests, each row's last status, and why it stopped, if it did."""
    if stats is None:
        return {}
    return {
        org_id: {
            "requests": lane.requests,
            # each org's own ceiling: the run's line had shown neither org's (review h9b)
            "rate": {"mode": "auto" if lane.controller is not None else "fixed", "limit": round(lane.limiter.rate, 2)},
            "by_status": dict(lane.final),
            "aborted": {"code": str(lane.abort.code), "message": str(lane.abort)} if lane.abort else None,
        }
        for org_id, lane in stats.lanes.items()
    }


def _final_rate(config: Config, stats: SubmitStats | None) -> float:
    timeline = stats.telemetry.timeline() if stats is not None else []
    if timeline and timeline[-1]["rate_limit"]:
        return float(timeline[-1]["rate_limit"])
    return AUTO_START if config.run.rate == "auto" else float(config.run.rate)


def _write_reports(document: dict[str, Any], summary: report.Summary, config: Config) -> list[Path]:
    """The summary JSON and the HTML report where asked (nothing lands beside the results unasked);
    returns the ones written.

    The run is over and its results written: a report that cannot be written is logged and left
    out of the files the run says it wrote (it had been listed as written), not fatal.
    """
    written = []
    path = config.run.summary_json
    if path is not None:
        try:
            report.write_document(document, path)
            written.append(path)
        except OSError as exc:
            log.error("summary.unwritable", path=str(path), reason=reason_of(exc))
    if config.run.report_html is not None:
        from .report_html import render_html

        try:
            render_html(document, config.run.results, config.run.report_html)
            written.append(config.run.report_html)
        except (OSError, PipelineError) as exc:
            if isinstance(exc, Interrupted):
                raise
            log.error("report.unwritable", path=str(config.run.report_html), reason=str(exc))
    return written


def _keep_the_record_of_sends(dest: Path) -> None:
    """`validate --new-ledger` writes its results over `dest`: where that file records rows sent
    and there is no ledger, it is what `ledger repair` rebuilds one from, and a preview had
    rewritten it all `pending`, the sir_ids gone (found by a review, h9b)."""
    try:
        sent = sends_recorded(dest)
    except InputError:
        return  # not a results file: nothing of the kind to keep
    if sent:
        raise ConfigError(
            f"validate --new-ledger would write over {dest}, which records {sent} rows sent (what `si-ingest ledger"
            " repair` rebuilds a ledger from): validate into another --results path to see what a new ledger sends"
        )


def _check_not_in_an_input_folder(dest: Path, inputs: list[Path]) -> None:
    """A results file inside an input folder: the next run reads it as an input (it had worked
    the first night and failed every night after with "missing required column", found by a
    review, h9b)."""
    for folder in inputs:
        if folder.is_dir() and dest.parent.resolve() == folder.resolve():
            raise ConfigError(
                f"--results {dest} is inside the input folder {folder}: the next run would read it as an input;"
                " put the results elsewhere"
            )


def _check_results_path(dest: Path, files: list[loader.InputFile]) -> None:
    """Before any request: the results file can be written and is not one of the inputs."""
    if not dest.parent.is_dir():
        raise LedgerError(f"the folder of the results file {dest} does not exist")
    if dest.is_dir():
        raise ConfigError(f"--results {dest} is a folder; name a .csv or .parquet file in it")
    for file in files:
        if same_file(dest, file.path):
            raise ConfigError(f"--results {dest} is one of the inputs: it would be overwritten; choose another path")


def _check_reports(config: Config, files: list[loader.InputFile]) -> None:
    """Before any request: --summary-json and --report-html replace neither an input nor the
    results file or its ledger (they had, after sending: an export overwritten with JSON, a
    journal with HTML), nor an existing file of another kind."""
    dest = config.run.results
    for flag, path, kinds in (
        ("--summary-json", config.run.summary_json, (".json",)),
        ("--report-html", config.run.report_html, (".html", ".htm")),
    ):
        if path is not None:
            check_output(flag, path, kinds, [f.path for f in files], dest)
            if flag == "--report-html" and config.run.summary_json and same_file(path, config.run.summary_json):
                raise ConfigError(f"--report-html and --summary-json both name {path}; give each its own file")
            if path.is_dir() or not os.access(path.parent, os.W_OK | os.X_OK):
                raise ConfigError(f"{flag} {path} cannot be written (a folder, or its folder is not writable)")


def check_output(flag: str, path: Path, kinds: tuple[str, ...], inputs: list[Path], results: Path) -> None:
    """ConfigError when writing `path` would replace an input, `results` or its ledger, or an
    existing file whose name does not end in one of `kinds`."""
    for other, what in [(p, "one of the inputs") for p in inputs] + [
        (p, "the results file or its ledger") for p in LedgerPaths(results).owned
    ]:
        if same_file(path, other):
            raise ConfigError(f"{flag} {path} is {what}: it would be overwritten; choose another path")
    if path.exists() and not path.name.lower().endswith(kinds) and not _written_by_us(path):
        raise ConfigError(
            f"{flag} {path} exists and is not a {' or '.join(kinds)} file: it would be overwritten; choose another path"
        )


def _written_by_us(path: Path) -> bool:
    """An existing report this tool wrote, whatever its name (a summary JSON named `last-run`,
    written the night before, had been refused the next night)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).lstrip()
    except OSError:
        return False
    summary = head.startswith(b"{") and b'"schema_version"' in head
    return summary or head.lower().startswith((b"<!doctype html", b"<html"))


@contextlib.contextmanager
def _naming_the_way_forward(results: Path) -> Iterator[None]:
    """Damage found while planning (a snapshot partition) names the commands to run next."""
    try:
        yield
    except LedgerDamaged as exc:
        exc.results = exc.results or results
        raise
