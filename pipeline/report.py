"""Summaries of a results file: counts by status and by error code, and the exit code they mean."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from . import loader, results
from .errors import InputError
from .models import Status

STATUS_ORDER = tuple(s.value for s in Status)


@dataclass(frozen=True, slots=True)
class Summary:
    path: Path
    total: int
    by_status: dict[str, int]
    by_error: list[tuple[str, str, int]] = field(default_factory=list)  # (status, code, rows)

    @property
    def exit_code(self) -> int:
        """0 when every row is created, else 1 (the contract's 'finished with problems')."""
        return 0 if self.by_status.get(Status.CREATED.value, 0) == self.total else 1


def summarize(path: Path) -> Summary:
    """Counts of a results file, read batch by batch (two columns; `loader.written_batches`, not
    polars' streaming CSV read, whose read-ahead grows with the file)."""
    if not path.exists():
        raise InputError(f"results file {path} does not exist")
    counts: Counter[tuple[str | None, str | None]] = Counter()
    try:
        results.require_columns(path, loader.written_header(path))
        for batch in loader.written_batches(path, ["status", "error_code"], loader.WRITTEN_ROWS):
            for status, code, rows in batch.group_by("status", "error_code").len().iter_rows():
                counts[(status, code)] += rows
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"results file {path} cannot be read: {str(exc).splitlines()[0]}") from exc
    return from_groups(path, ((status, code, rows) for (status, code), rows in counts.items()))


def from_groups(path: Path, groups: Iterable[tuple[str | None, str | None, int]]) -> Summary:
    """A Summary from (status, error_code, rows) counts."""
    by_status = dict.fromkeys(STATUS_ORDER, 0)
    errors: Counter[tuple[str, str]] = Counter()
    total = 0
    for status, code, rows in groups:
        total += rows
        by_status[str(status)] = by_status.get(str(status), 0) + rows
        if code is not None and status != Status.CREATED.value:
            errors[(str(status), code)] += rows
    by_error = sorted(((s, c, n) for (s, c), n in errors.items()), key=lambda e: (-e[2], e[0], e[1]))
    return Summary(path=path, total=total, by_status=by_status, by_error=by_error)


def render_text(summary: Summary) -> str:
    lines = [f"results: {summary.path}  ({summary.total} rows)"]
    for status in STATUS_ORDER:
        count = summary.by_status.get(status, 0)
        if count or status == Status.CREATED.value:
            lines.append(f"  {status:<10} {count:>9}")
    if summary.by_error:
        lines.append("errors:")
        for status, code, count in summary.by_error:
            lines.append(f"  {code:<24} {count:>9}  ({status})")
    return "\n".join(lines)


RUN_SCHEMA_VERSION = 1
RUN_DOCUMENT_SUFFIX = ".run.json"  # `<results>.run.json`: where reports look for a run's document


def run_document_path(results_path: Path) -> Path:
    """Where a run's summary JSON is looked for by default: beside the results file."""
    return results_path.with_name(results_path.name + RUN_DOCUMENT_SUFFIX)


def load_run_document(results_path: Path, path: Path | None = None) -> dict[str, Any] | None:
    """A run's summary JSON (`path`, else `<results>.run.json` if there is one), or None."""
    path = path or run_document_path(results_path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"run document {path} cannot be read ({exc}); move it aside to report the results only"
        ) from exc
    if not isinstance(doc, dict) or doc.get("schema_version") != RUN_SCHEMA_VERSION:
        version = doc.get("schema_version") if isinstance(doc, dict) else None
        raise InputError(
            f"run document {path} has schema_version {version!r}; this si-ingest reads {RUN_SCHEMA_VERSION}"
        )
    return doc


def run_document(
    *,
    command: str,
    started_at: str,
    duration_s: float,
    results: Path,
    inputs: list[Path],
    exit_code: int,
    summary: Summary,
    plan: dict[str, int],
    stats: Any | None,
    rate_mode: str,
    rate_limit: float,
    aborted: dict[str, Any] | None,
    interrupted: bool,
    orgs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's summary as one JSON document (README "Summary JSON"; schema_version 1).

    Written to `--summary-json FILE` and read by the HTML report. `stats` is the submit
    loop's SubmitStats (None when nothing was sent).
    """
    telemetry = stats.telemetry if stats is not None else None
    return {
        "schema_version": RUN_SCHEMA_VERSION,
        "command": command,
        "started_at": started_at,
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_s": round(duration_s, 3),
        "results": str(results),
        "inputs": [str(p) for p in inputs],
        "exit_code": exit_code,
        "rows": summary.total,
        "by_status": {s: summary.by_status.get(s, 0) for s in STATUS_ORDER},
        "by_error": [{"status": st, "error_code": code, "rows": n} for st, code, n in summary.by_error],
        "plan": plan,
        "requests": telemetry.requests if telemetry else 0,
        "never_connected": telemetry.never_connected if telemetry else 0,
        "retries": stats.retries if stats is not None else 0,
        "throttled": stats.throttled if stats is not None else 0,
        "mean_rate": round(telemetry.mean_rate(), 2) if telemetry else 0.0,
        "peak_rate": float(telemetry.peak_rate()) if telemetry else 0.0,
        "rate": {"mode": rate_mode, "limit": round(rate_limit, 2)},
        "latency_ms": telemetry.latency_ms() if telemetry else {"p50": None, "p90": None, "p99": None, "max": None},
        "timeline": telemetry.timeline() if telemetry else [],
        "aborted": aborted,
        "interrupted": interrupted,
        "orgs": orgs or {},
    }


def write_document(document: dict[str, Any], path: Path) -> None:
    """Write atomically (temp file, rename): a reader never sees half a summary."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, path)


def render_run(document: dict[str, Any], summary: Summary) -> str:
    """The end-of-run summary for a person: counts, errors, duration, rates, files written."""
    lines = [render_text(summary)]
    if document["command"] == "run":
        latency = document["latency_ms"]
        lines.append(
            f"sent: {document['requests']} requests"
            + (f" ({document['never_connected']} never connected)" if document.get("never_connected") else "")
            + f" in {document['duration_s']:.1f}s "
            f"(mean {document['mean_rate']:.1f}/s, peak {document['peak_rate']:.0f}/s, "
            + (
                "limits per org in the summary JSON), "
                if document["rate"]["mode"] == "per org"
                else f"limit {document['rate']['limit']:.0f}/s {document['rate']['mode']}), "
            )
            + f"{document['retries']} retries, {document['throttled']} throttled (429)"
            + (f", latency p50 {latency['p50']} ms p99 {latency['p99']} ms" if latency["p50"] is not None else "")
        )
    return "\n".join(lines)
