"""One self-contained HTML page per run: summary, timeline chart, latency, error codes with example rows."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

import polars as pl

from . import __version__, report, results
from .errors import ConfigError, InputError, reason_of
from .models import Status
from .report_chart import downsample, timeline_svg
from .report_style import CSS

EXAMPLES = 3  # example rows shown per error code
MAX_CODES = 60  # error codes listed (the rest are counted in one line)
MAX_INPUTS = 12
MESSAGE_CHARS = 300
DASH = "\N{EN DASH}"  # an unknown value
EXAMPLE_COLUMNS = ("status", "error_code", "source", "source_row", "contact_id", "error_message")

# What each status asks of the operator (the README's "next run" column, shortened).
NEXT_STEP = {
    "invalid": "fix the data; validated again next run",
    "duplicate": "same row key as an earlier row; never sent",
    "rejected": "refused by Zyntro for good: fix the data",
    "failed": "nothing created; sent again next run",
    "unknown": "may exist in Zyntro: check there before --resend-unknown",
    "pending": "not attempted; sent next run",
}

Key = tuple[str, str]  # (status, error_code)
Example = tuple[str | None, int | None, str | None, str | None]  # source, source_row, contact_id, error_message


def error_examples(path: Path, counts: Mapping[Key, int], per_key: int = EXAMPLES) -> dict[Key, list[Example]]:
    """The first `per_key` rows of each (status, error_code) in `counts` (its rows), in file order.

    Streamed batch by batch and stopped once every key has min(per_key, rows) examples, so
    memory stays a batch whatever the file's size (a group_by().head() would gather every
    non-created row: 3.4 GB for a 10M-row file, against 0.5 GB this way).
    """
    found: dict[Key, list[Example]] = {k: [] for k in counts}
    enough = {k: min(per_key, n) for k, n in counts.items()}
    if not found:
        return found
    rows = (
        results.scan(path)
        .filter((pl.col("status") != Status.CREATED.value) & pl.col("error_code").is_not_null())
        .select(EXAMPLE_COLUMNS)
    )
    for batch in rows.collect_batches():
        firsts = batch.filter(pl.int_range(pl.len()).over("status", "error_code") < per_key)
        for status, code, *example in firsts.iter_rows():
            bucket = found.get((status, code))
            if bucket is not None and len(bucket) < per_key:
                bucket.append((example[0], example[1], example[2], example[3]))
        if all(len(found[k]) >= n for k, n in enough.items()):
            break
    return found


def render_html(run: dict[str, Any] | None, results_path: Path, dest: Path) -> None:
    """Write the report of one run (or, with `run` None, of a results file alone) to `dest`.

    Written to a temp file and renamed, so a reader never sees half a page.
    """
    if run is None:
        summary = report.summarize(results_path)
        by_status, total = summary.by_status, summary.total
        by_error = [{"status": s, "error_code": c, "rows": n} for s, c, n in summary.by_error]
    else:
        by_status = {str(k): int(v) for k, v in (run.get("by_status") or {}).items()}
        total = int(run.get("rows") or sum(by_status.values()))
        by_error = list(run.get("by_error") or [])
    counts = {(str(e.get("status")), str(e.get("error_code"))): _count(e.get("rows")) for e in by_error[:MAX_CODES]}
    note = ""
    try:
        examples = error_examples(results_path, counts)
    except (InputError, OSError, pl.exceptions.PolarsError) as exc:
        examples, note = {}, f"Example rows unavailable: {str(exc).splitlines()[0]}"
    page = _page(run, results_path, total, by_status, by_error, examples, note)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write HTML report {dest}: {reason_of(exc)}") from exc


# ---- formatting -------------------------------------------------------------------------


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _int(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else DASH


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else EXAMPLES


def _float(value: object, digits: int = 1, unit: str = "") -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,.{digits}f}{unit}"
    return DASH


def _when(value: object) -> str:
    if not isinstance(value, str):
        return DASH
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return _e(value)
    if moment.tzinfo is None:
        zone = ""
    elif moment.utcoffset() == timedelta(0):
        zone = " UTC"
    else:
        zone = moment.strftime(" %z")
    return _e(moment.strftime("%Y-%m-%d %H:%M:%S") + zone)


def _duration(value: object) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return DASH
    if value < 60:
        return f"{value:.1f} s"
    s = round(value)
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _share(n: int, total: int) -> str:
    if not n or not total:
        return "0%"
    share = 100 * n / total
    return "<0.1%" if share < 0.1 else ">99.9%" if n < total and share > 99.9 else f"{share:.1f}%"


def _table(rows: Iterable[tuple[str, str]], cls: str = "facts") -> str:
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>'


# ---- sections ---------------------------------------------------------------------------


def _verdict(run: Mapping[str, Any] | None, total: int, by_status: Mapping[str, int]) -> tuple[str, str]:
    """(css class, sentence) saying how the run ended."""
    left = total - by_status.get(Status.CREATED.value, 0)
    if run is not None and isinstance(run.get("aborted"), dict):
        a = run["aborted"]
        org = f" (org {_e(a['org_id'])})" if a.get("org_id") else ""
        return "bad", f"Aborted{org}: <b>{_e(a.get('code'))}</b> {_e(a.get('message'))}"
    if run is not None and run.get("interrupted"):
        return "warn", "Interrupted: rerun the same command to continue."
    if run is not None and run.get("command") == "validate":
        plan = run.get("plan") or {}
        return "info", f"Validated only: {_int(plan.get('to_send'))} rows would be sent."
    if total == 0:
        return "info", "No rows."
    if left == 0:
        return "ok", f"All {total:,} rows created."
    return "warn", f"Finished with problems: {left:,} of {total:,} rows not created."


def _header(run: Mapping[str, Any] | None, results_path: Path, total: int, by_status: Mapping[str, int]) -> str:
    cls, sentence = _verdict(run, total, by_status)
    exit_code = run.get("exit_code") if run is not None else None
    command = f"si-ingest {_e(run.get('command', '?'))}" if run is not None else "si-ingest report"
    started = f" · {_when(run.get('started_at'))}" if run is not None else ""
    pill = f'<span class="pill {cls}">exit {_e(exit_code)}</span>' if exit_code is not None else ""
    title = "Run report" if run is not None else "Results report"
    return (
        f'<header><div><div class="eyebrow">{command}{started}</div>'
        f'<h1>{title}</h1><div class="path">{_e(results_path)}</div></div>{pill}</header>'
        f'<div class="verdict {cls}">{sentence}</div>'
    )


def _kpis(run: Mapping[str, Any] | None, total: int, by_status: Mapping[str, int]) -> str:
    created = by_status.get(Status.CREATED.value, 0)
    cards = [("Rows", _int(total)), ("Created", _int(created)), ("Not created", _int(total - created))]
    if run is not None:
        cards += [
            ("Duration", _duration(run.get("duration_s"))),
            ("Requests", _int(run.get("requests"))),
            ("Mean rate", _float(run.get("mean_rate"), 1, "/s")),
            ("429s", _int(run.get("throttled"))),
        ]
    body = "".join(f'<div class="kpi"><div class="k">{k}</div><div class="v">{v}</div></div>' for k, v in cards)
    return f'<section class="kpis">{body}</section>'


def _statuses(total: int, by_status: Mapping[str, int]) -> str:
    order = [s.value for s in Status] + sorted(set(by_status) - {s.value for s in Status})
    bar, badges = [], []
    for status in order:
        n = by_status.get(status, 0)
        share = 100 * n / total if total else 0
        if n:
            bar.append(f'<span class="s-{_e(status)}" style="width:{share:.3f}%" title="{_e(status)}: {n:,}"></span>')
        dim = "" if n else " zero"
        badges.append(
            f'<span class="badge s-{_e(status)}{dim}"><b>{_e(status)}</b> {n:,}'
            f"<small>{_e(_share(n, total))}</small></span>"
        )
    return (
        "<section><h2>Rows by status</h2>"
        f'<div class="stack">{"".join(bar)}</div><div class="badges">{"".join(badges)}</div></section>'
    )


def _details(run: Mapping[str, Any], results_path: Path) -> str:
    inputs = [str(i) for i in run.get("inputs") or []]
    shown = "<br>".join(_e(i) for i in inputs[:MAX_INPUTS])
    if len(inputs) > MAX_INPUTS:
        shown += f"<br><i>and {len(inputs) - MAX_INPUTS:,} more</i>"
    rate = run.get("rate") or {}
    limit = _float(rate.get("limit"), 0, "/s")
    facts = [
        ("Command", f"<code>si-ingest {_e(run.get('command', '?'))}</code>"),
        ("Results", f"<code>{_e(run.get('results') or results_path)}</code>"),
        ("Inputs", shown or DASH),
        ("Started", _when(run.get("started_at"))),
        ("Finished", _when(run.get("finished_at"))),
        ("Duration", _duration(run.get("duration_s"))),
        ("Exit code", _e(run.get("exit_code", DASH))),
        ("Rate", f"{_e(rate.get('mode', DASH))}, limit {limit}" if rate else DASH),
    ]
    plan = run.get("plan") or {}
    plan_rows = [
        ("Rows read", _int(plan.get("rows"))),
        ("Invalid", _int(plan.get("invalid"))),
        ("Duplicate", _int(plan.get("duplicate"))),
        ("Settled earlier", _int(plan.get("settled_earlier"))),
        ("To send", _int(plan.get("to_send"))),
    ]
    sending = [
        ("Requests", _int(run.get("requests"))),
        ("Retries", _int(run.get("retries"))),
        ("429s", _int(run.get("throttled"))),
        ("Mean rate", _float(run.get("mean_rate"), 1, "/s")),
        ("Peak rate", _float(run.get("peak_rate"), 0, "/s")),
    ]
    return (
        '<section class="cols">'
        f"<div><h2>Run</h2>{_table(facts)}</div>"
        f"<div><h2>Plan</h2>{_table(plan_rows)}<h2>Sending</h2>{_table(sending)}</div>"
        f"<div><h2>Latency</h2>{_latency(run.get('latency_ms') or {})}</div>"
        "</section>"
    )


def _ms_digits(value: object) -> int:
    """Decimals worth showing: 0.58 ms on loopback, 42 ms over a network."""
    if not isinstance(value, int | float):
        return 0
    return 2 if value < 1 else 1 if value < 10 else 0


def _latency(latency: Mapping[str, Any]) -> str:
    values = {k: latency.get(k) for k in ("p50", "p90", "p99", "max")}
    numbers = [v for v in values.values() if isinstance(v, int | float)]
    if not numbers:
        return '<p class="muted">No answers were timed.</p>'
    top = max(numbers) or 1.0
    rows = []
    for name, v in values.items():
        width = 100 * v / top if isinstance(v, int | float) else 0
        rows.append(
            f'<tr><th>{name}</th><td class="num">{_float(v, _ms_digits(v), " ms")}</td>'
            f'<td class="barcell"><span class="bar" style="width:{width:.1f}%"></span></td></tr>'
        )
    return f'<table class="latency">{"".join(rows)}</table>'


def _timeline(run: Mapping[str, Any] | None) -> str:
    title = "<h2>Requests over time</h2>"
    if run is None:
        return (
            f'<section>{title}<p class="muted">No timeline was recorded: only the results file was found '
            "(no run document beside it). Counts and error codes below come from the results file.</p></section>"
        )
    points = downsample(run.get("timeline") or [])
    if not points:
        return f'<section>{title}<p class="muted">No requests were sent in this run.</p></section>'
    width = max(p.width for p in points)
    caption = f"Each point is the mean over {width} s." if width > 1 else "One point per second."
    started = _when(run.get("started_at"))
    return f'<section>{title}{timeline_svg(points)}<p class="caption">{caption} Run started {started}.</p></section>'


def _errors(
    by_error: list[dict[str, Any]], examples: Mapping[Key, list[Example]], results_path: Path, note: str
) -> str:
    title = "<h2>Error codes</h2>"
    if not by_error:
        return f'<section>{title}<p class="muted">No row ended with an error code.</p></section>'
    rows = []
    for entry in by_error[:MAX_CODES]:
        status, code = str(entry.get("status")), str(entry.get("error_code"))
        rows.append(
            f'<tr class="code"><td><span class="badge s-{_e(status)}"><b>{_e(status)}</b></span></td>'
            f'<td><code>{_e(code)}</code></td><td class="num">{_int(entry.get("rows"))}</td>'
            f'<td class="muted">{_e(NEXT_STEP.get(status, ""))}</td></tr>'
        )
        for source, source_row, contact, message in examples.get((status, code), []):
            text = message or ""
            short = text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + "…"
            rows.append(
                f'<tr class="example"><td></td><td colspan="3"><span class="where">{_e(source or "")}:'
                f"{_e(source_row if source_row is not None else '?')}</span>"
                f'<code class="contact">{_e(contact or "")}</code><span class="msg">{_e(short)}</span></td></tr>'
            )
    more = len(by_error) - MAX_CODES
    tail = f'<p class="muted">and {more} more codes.</p>' if more > 0 else ""
    note_html = f'<p class="muted">{_e(note)}</p>' if note else ""
    return (
        f"<section>{title}"
        f'<table class="errors"><thead><tr><th>status</th><th>code</th><th class="num">rows</th><th></th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>{tail}{note_html}"
        f'<p class="caption">Example rows: the first {EXAMPLES} of each code in <code>{_e(results_path)}</code> '
        "(source file:row, contact, message).</p></section>"
    )


def _orgs(run: Mapping[str, Any] | None) -> str:
    orgs = (run or {}).get("orgs") or {}
    if not orgs:
        return ""
    rows = []
    for org_id, org in orgs.items():
        counts = org.get("by_status") or {}
        aborted = org.get("aborted")
        stop = f"{_e(aborted.get('code'))}: {_e(aborted.get('message'))}" if isinstance(aborted, dict) else ""
        rows.append(
            f'<tr><td><code>{_e(org_id)}</code></td><td class="num">{_int(org.get("requests"))}</td>'
            + "".join(f'<td class="num">{_int(counts.get(s.value, 0))}</td>' for s in Status)
            + f'<td class="bad-text">{stop}</td></tr>'
        )
    head = "".join(f'<th class="num">{s.value}</th>' for s in Status)
    return (
        '<section><h2>Orgs</h2><table class="orgs"><thead><tr><th>org</th><th class="num">requests</th>'
        f"{head}<th>stopped by</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _page(
    run: Mapping[str, Any] | None,
    results_path: Path,
    total: int,
    by_status: Mapping[str, int],
    by_error: list[dict[str, Any]],
    examples: Mapping[Key, list[Example]],
    note: str,
) -> str:
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = [
        _header(run, results_path, total, by_status),
        _kpis(run, total, by_status),
        _statuses(total, by_status),
        _details(run, results_path) if run is not None else "",
        _timeline(run),
        _errors(by_error, examples, results_path, note),
        _orgs(run),
        f"<footer>si-ingest {_e(__version__)} · report generated {generated}</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        # nothing on this page may load anything: styles are inline, the chart is inline SVG
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>si-ingest report · {_e(results_path.name)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )
