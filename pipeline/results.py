"""The plan + the ledger's state -> the results file, written whole or not at all."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

from . import safe_csv
from .errors import InputError, LedgerError
from .ledger.fold import Fold
from .ledger.snapshot import fsync_dir, fsync_file
from .models import EXTRA_RESULT_COLUMNS, RESULT_COLUMNS
from .plan import Plan

RESULT_SCHEMA: dict[str, type[pl.DataType]] = {
    **dict.fromkeys((*RESULT_COLUMNS, *EXTRA_RESULT_COLUMNS), pl.String),
    "source_row": pl.Int64,
    "sir_id": pl.Int64,
    "attempts": pl.Int64,
    "http_status": pl.Int64,
}


def render(plan: Plan, view: Fold, dest: Path) -> list[tuple[str | None, str | None, int]]:
    """One row per input row, in input order: the local verdict, else the ledger's, else pending.

    Streamed batch by batch (a polars IO source into `sink`), so the file is always whole and
    memory stays one batch. Returns the (status, error_code, rows) counts of what it wrote,
    for the summary.
    """
    batches = plan.results(view)
    counts: Counter[tuple[str | None, str | None]] = Counter()

    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        for frame in batches:
            for status, code, rows in frame.group_by("status", "error_code").len().iter_rows():
                counts[(status, code)] += rows
            yield frame.cast(RESULT_SCHEMA)  # type: ignore[arg-type]  # a dict of dtypes is accepted

    for stale in dest.parent.glob(f".{dest.name}.*.tmp"):  # left by a run killed mid-render; we hold the lock
        stale.unlink(missing_ok=True)
    try:
        sink(register_io_source(source, schema=pl.Schema(RESULT_SCHEMA)), dest)
        return [(status, code, rows) for (status, code), rows in counts.items()]
    except (OSError, pl.exceptions.PolarsError) as exc:
        if isinstance(exc, pl.exceptions.PolarsError) and isinstance(exc.__cause__, LedgerError):
            raise exc.__cause__ from None
        reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
        raise LedgerError(f"cannot write results file {dest}: {reason}") from exc


def sink(frame: pl.LazyFrame, dest: Path) -> None:
    """Stream `frame` into `dest`: Parquet by suffix, else CSV with its cells neutralised
    (`safe_csv`), to a temp file that is fsynced and renamed over `dest`, so the file is
    whole or absent. Raises OSError or PolarsError (the temp file removed)."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        if dest.name.endswith(".parquet"):
            frame.sink_parquet(tmp)
        else:
            safe_csv.neutralise(frame).sink_csv(tmp)
        fsync_file(tmp)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def scan(path: Path) -> pl.LazyFrame:
    """A results file, typed, for reports and tests (a CSV's neutralised cells restored)."""
    if not path.exists():
        raise InputError(f"results file {path} does not exist")
    return safe_csv.scan_written(path, schema_overrides=RESULT_SCHEMA)


def read(path: Path) -> pl.DataFrame:
    try:
        frame = scan(path).collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"results file {path} cannot be read: {str(exc).splitlines()[0]}") from exc
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path} is not an si-ingest results file (no column {missing[0]})")
    return frame
