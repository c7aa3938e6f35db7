"""Parse flags -> load config -> configure logging -> asyncio.run(...); nothing else."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, crash, logs, report
from .config import (
    DEFAULT_BREAKER,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RATE,
    Config,
    load_config,
    load_credentials,
    results_file,
)
from .entry import outcome_is, signal_name
from .errors import ConfigError, InputError, Interrupted, LedgerError, PipelineError
from .limiter import steady_rate
from .sandbox.args import add_sandbox_arguments


def _rate(value: str) -> float | str:
    if value == "auto":
        return "auto"
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of requests per second or 'auto', not {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="si-ingest", description="Push planned CRM actions into Zyntro's addSIRequest API."
    )
    parser.add_argument("--version", action="version", version=f"si-ingest {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def inputs_and_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "inputs", nargs="+", type=Path, metavar="INPUT", help=".csv, .csv.gz or .parquet file, or a folder of them"
        )
        p.add_argument("--config", type=Path, help="TOML config (see configs/)")
        p.add_argument("--results", type=Path, help="results file, .csv or .parquet (default si-results.csv)")
        p.add_argument("--log-format", choices=("json", "console"), help="default: json unless stderr is a terminal")
        p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="default: info")
        p.add_argument("--summary-json", type=Path, metavar="FILE", help="also write the summary as JSON (see README)")
        p.add_argument("--report-html", type=Path, metavar="FILE", help="also write the HTML run report")
        p.add_argument(
            "--new-ledger",
            action="store_true",
            help="start a new ledger although the results file records rows sent (they may be sent again)",
        )

    run = sub.add_parser("run", help="load, validate and submit every row; write the results file")
    inputs_and_config(run)
    run.add_argument("--base-url", help="API prefix; requests go to URL/addSIRequest")
    run.add_argument(
        "--rate", type=_rate, help=f"requests per second over any 1-second window, or 'auto' (default {DEFAULT_RATE:g})"
    )
    run.add_argument("--concurrency", type=int, help=f"requests in flight at most (default {DEFAULT_CONCURRENCY})")
    run.add_argument(
        "--max-attempts", type=int, help=f"tries per row for retryable failures (default {DEFAULT_MAX_ATTEMPTS})"
    )
    # each boolean also has its --no- form, so a flag can undo a config file's setting for one run
    run.add_argument(
        "--resend-unknown",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also send rows whose earlier outcome is unknown",
    )
    run.add_argument(
        "--dry-run", action=argparse.BooleanOptionalAction, default=None, help="validate only, send nothing"
    )
    run.add_argument(
        "--fsync",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fsync the journal before sending (default; --no-fsync survives kill -9, not power loss)",
    )
    run.add_argument("--connect-timeout", type=float, help="seconds to connect (default 10)")
    run.add_argument("--read-timeout", type=float, help="seconds to wait for an answer (default 30)")
    run.add_argument(
        "--breaker",
        type=int,
        help="stop (exit 3) when the last N answers are the same row error, min(N, 10) requests in a row end"
        f" unknown, or min(N, 10) rows in a row never connected; 0: never (default {DEFAULT_BREAKER})",
    )
    run.add_argument("--progress-every", type=float, help="seconds between progress lines off a terminal (default 5)")

    validate = sub.add_parser("validate", help="load and validate only; send nothing, need no credentials")
    inputs_and_config(validate)

    demo = sub.add_parser("demo", help="run sample_data/ end to end against the built-in sandbox")
    demo.add_argument(
        "--output", type=Path, default=Path("si-demo"), help="folder for the demo's results (default si-demo)"
    )
    demo.add_argument("--log-format", choices=("json", "console"), help="default: json unless stderr is a terminal")

    add_sandbox_arguments(sub.add_parser("sandbox", help="run the local Zyntro simulator in the foreground"))

    rep = sub.add_parser("report", help="print the summary of a results file (--html, --errors: more files)")
    rep.add_argument("results", type=Path)
    rep.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML report to FILE")
    rep.add_argument(
        "--summary", type=Path, metavar="FILE",
        help="the run's --summary-json file, for the HTML report's timeline (default: RESULTS.run.json if present)",
    )  # fmt: skip
    rep.add_argument(
        "--errors", type=Path, metavar="FILE",
        help="write the rows that did not end created, with every input column, to FILE (.csv or .parquet) "
        "to fix and feed back to run",
    )  # fmt: skip
    rep.add_argument(
        "--inputs", type=Path, nargs="+", metavar="PATH",
        help="the run's inputs, for --errors (default: as <RESULTS>.run.json names them)",
    )  # fmt: skip

    ledger = sub.add_parser("ledger", help="check or repair the ledger beside a results file")
    actions = ledger.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    for name, text in (
        ("check", "list damaged ledger records and the rows they concern (exit 1 when there are any)"),
        ("repair", "rewrite the ledger from its sound records; rows that may have been sent become unknown"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("results", type=Path, help="the results file whose ledger to look at")
        if name == "repair":
            action.add_argument(
                "--accept-loss",
                action="store_true",
                help="mend the ledger although row_keys it held are lost for good (a lost snapshot, lost records): "
                "rows among them are sent again if an input holds them",
            )
    return parser


def use_uvloop() -> bool:
    """uvloop where it is installed (it is a dependency on Linux and macOS): the client spends
    less CPU per request, which on a 2-core machine shared with the server is throughput
    (bench/RESULTS.md). Falls back to asyncio's own loop anywhere else."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = _dispatch(args)
    except PipelineError as exc:
        outcome_is(exc.exit_code)  # before the line: a signal while it prints keeps this code
        print(f"si-ingest: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM (entry.py makes it one)
        print(f"si-ingest: interrupted by {signal_name(exc)}", file=sys.stderr)
        code = 130
    except Exception as exc:  # a bug: one line, the traceback in a file, exit 4
        signalled = _signal_under(exc)
        if signalled is not None:  # a signal that polars wrapped (raised inside one of its callbacks)
            print(f"si-ingest: {signalled}", file=sys.stderr)
            sys.exit(130)
        outcome_is(crash.EXIT_INTERNAL)
        report = crash.write_report(exc, argv if argv is not None else sys.argv[1:])
        print(
            f"si-ingest: internal error ({type(exc).__name__}); the ledger is intact and a rerun resumes. "
            f"Please report it with {report}",
            file=sys.stderr,
        )
        code = crash.EXIT_INTERNAL
    sys.exit(code)


def _signal_under(exc: BaseException) -> str | None:
    """What an interrupt says, when `exc` was caused by one (a handler's Interrupted, raised while
    polars ran a Python callback, comes back as a polars ComputeError)."""
    seen: BaseException | None = exc
    for _ in range(10):
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if isinstance(seen, Interrupted):
            return str(seen)
        if isinstance(seen, KeyboardInterrupt):
            return f"interrupted by {seen.args[0] if seen.args else 'SIGINT'}"
    return None


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("run", "validate"):
        return _run(args)
    if args.command == "ledger":
        results = results_file(args.results)
        return _ledger(args.ledger_command, results, accept_loss=getattr(args, "accept_loss", False))
    if args.command == "report":
        return _report(args)
    if args.command == "demo":
        from .demo import demo

        logs.configure(args.log_format)
        return asyncio.run(demo(args.output))
    from .sandbox.serve import config_from_args, serve

    logs.configure("console" if sys.stderr.isatty() else "json")
    return asyncio.run(serve(config_from_args(args), args.host, args.port))


def _estimate(to_send: int, settled: int, config: Config) -> str:
    """validate's dry-run estimate: rows to send, rows settled earlier, how long at the configured rate."""
    text = f"would send: {to_send} rows (settled earlier: {settled})"
    if config.run.rate == "auto":
        return text + "; at --rate auto the time depends on the server's limit"
    seconds = to_send / steady_rate(float(config.run.rate))
    hours, rest = divmod(round(seconds), 3600)
    return text + f"; at --rate {config.run.rate:g} that takes about {hours}:{rest // 60:02d}:{rest % 60:02d}"


def _report(args: argparse.Namespace) -> int:
    if args.inputs and args.errors is None:
        raise ConfigError("--inputs names the inputs for --errors; add --errors FILE")
    args.results = results_file(args.results, reading=True)  # its run document is beside the file itself
    if args.results.is_dir():  # polars' own words had leaked ("Please use a glob pattern")
        raise InputError(f"{args.results} is a folder; name the results file (.csv or .parquet) in it")
    if args.summary is not None and args.html is None:
        raise ConfigError("--summary names the run document for --html; add --html FILE")
    if args.summary is not None and not args.summary.exists():
        raise InputError(f"run document {args.summary} does not exist")
    summary = report.summarize(args.results)
    print(report.render_text(summary))
    if args.html is not None:
        from .report_html import render_html
        from .runner import check_output

        check_output("--html", args.html, (".html", ".htm"), [], args.results)
        render_html(report.load_run_document(args.results, args.summary), args.results, args.html)
        print(f"html report: {args.html}")
    if args.errors is not None:
        from . import errorfile

        rows = errorfile.write(args.results, args.errors, args.inputs)
        print(f"error file: {args.errors}  ({rows} rows; fix them and feed the file back to `si-ingest run`)")
    return 0


def _ledger(action: str, results: Path, *, accept_loss: bool = False) -> int:
    from .ledger import LedgerPaths, RunLock, seal
    from .ledger.check import check
    from .ledger.repair import repair

    if not results.parent.is_dir():
        raise LedgerError(f"the folder of the results file {results} does not exist")
    paths = LedgerPaths(results)
    if not any(p.exists() for p in (paths.results, paths.journal, paths.snapshot, paths.lock)):
        # a mistyped path: "no damage found" (and a new lock file, or a new empty journal) had
        # read as a clean bill for a ledger that is not there (found by a review, h9b)
        raise LedgerError(f"there is no results file or ledger at {results}: check the path")
    with RunLock(results) as lock:
        # check changes no file: the last run's seal and key count stand; repair keeps the count
        lock.seal(*seal.carried(lock.previous, keep_seal=action == "check"))
        least = seal.floor(lock.previous)
        workdir = lock.make_workdir()
        try:
            if action == "check":
                report = check(results, workdir, least=least)
                print(report.render())
                return 1 if report.findings else 0
            report, marked, held = repair(results, workdir, least=least, accept_loss=accept_loss)
            lock.seal(seal.floor_line(held))  # what it holds now; the files changed, so no seal
            print(report.render())
            rewritten = " and ".join(p.name for p in (paths.snapshot, paths.journal) if p.exists())
            rows = "1 row is" if marked == 1 else f"{marked} rows are"
            print(
                f"repaired: {rewritten} rewritten from the sound records; {rows} now `unknown`"
                " (send them only after checking in Zyntro, with --resend-unknown)"
            )
            return 0
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(args: argparse.Namespace) -> int:
    from .runner import run

    validate_only = args.command == "validate" or bool(getattr(args, "dry_run", False))
    overrides: dict[str, Any] = {
        "run.results": args.results,
        "run.log_format": args.log_format,
        "run.log_level": args.log_level,
        "run.summary_json": args.summary_json,
        "run.report_html": args.report_html,
    }
    if args.command == "run":
        overrides.update(
            {
                "api.base_url": args.base_url,
                "api.connect_timeout": args.connect_timeout,
                "api.read_timeout": args.read_timeout,
                "run.rate": args.rate,
                "run.concurrency": args.concurrency,
                "run.max_attempts": args.max_attempts,
                "run.resend_unknown": args.resend_unknown,
                "run.fsync": args.fsync,
                "run.dry_run": args.dry_run,
                "run.breaker": args.breaker,
                "run.progress_every": args.progress_every,
            }
        )
    config = load_config(args.config, overrides)
    validate_only = validate_only or config.run.dry_run
    credentials = None if validate_only else load_credentials(config)
    logs.configure(config.run.log_format, credentials.values() if credentials else (), level=config.run.log_level)
    if not validate_only:
        use_uvloop()
    result = asyncio.run(run(args.inputs, config, credentials, new_ledger=args.new_ledger))
    print(report.render_run(result.document, result.summary))
    if validate_only:
        print(_estimate(result.plan.to_send, result.plan.settled, config))
    written = [str(config.run.results), *(str(p) for p in result.reports)]
    print(f"written: {', '.join(written)}")
    for path in (config.run.summary_json, config.run.report_html):
        if path is not None and path not in result.reports:
            print(
                f"si-ingest: {path} could not be written (the log says why); the results file is whole", file=sys.stderr
            )
    org_aborts = {org: info["aborted"] for org, info in result.document.get("orgs", {}).items() if info["aborted"]}
    for org_id, aborted in org_aborts.items():
        print(f"si-ingest: aborted for org {org_id}: {aborted['message']} (its rows stay pending)", file=sys.stderr)
    if result.abort is not None and not org_aborts:
        print(f"si-ingest: aborted: {result.abort}", file=sys.stderr)
    elif result.interrupted:
        print("si-ingest: interrupted; rerun the same command to continue", file=sys.stderr)
    return result.exit_code
