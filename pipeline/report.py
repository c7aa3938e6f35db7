"""Summaries of a results file: counts by status and by error code, and the exit code they mean."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from . import results
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
    frame = results.read(path)
    counts = frame.group_by("status").len()
    by_status = dict.fromkeys(STATUS_ORDER, 0)
    by_status.update(dict(counts.iter_rows()))
    errors = (
        frame.filter(pl.col("error_code").is_not_null() & (pl.col("status") != Status.CREATED.value))
        .group_by("status", "error_code")
        .len()
        .sort(["len", "status", "error_code"], descending=[True, False, False])
    )
    return Summary(path=path, total=frame.height, by_status=by_status, by_error=list(errors.iter_rows()))


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
