"""Summaries of a results file: counts by status and by error code, and the exit code they mean."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from . import results
from .errors import InputError
from .models import RESULT_COLUMNS, Status

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
    """Counts of a results file, read streaming (only two columns, never the whole file)."""
    scan = results.scan(path)
    try:
        missing = [c for c in RESULT_COLUMNS if c not in scan.collect_schema().names()]
        if missing:
            raise InputError(f"{path} is not an si-ingest results file (no column {missing[0]})")
        groups = scan.group_by("status", "error_code").len().collect(engine="streaming")
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"results file {path} cannot be read: {str(exc).splitlines()[0]}") from exc
    return from_groups(path, groups.iter_rows())


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
