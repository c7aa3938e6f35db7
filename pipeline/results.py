"""The plan + the ledger's state -> the results file, written whole or not at all."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import polars as pl
from polars.io.plugins import register_io_source

from . import safe_csv
from .background import Writer
from .errors import InputError, LedgerError, reason_of
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

# Rows per write of a CSV results file. polars' streaming `sink_csv`, fed from an IO source,
# ran ahead of its writer: in 6 of 6 bench runs the 5M-row validate peaked while rendering, at
# 355-501 MB, against 305-320 MB while planning. Written here in pieces, the render peaked
# below planning in 4 of 4 (bench/PROFILE.md). Pieces of one 50k batch cost 1.2 s more per 5M
# rows than the sink (each write waits for the next piece); 200k rows cost ~0.55 s (render
# 3.2-3.3 -> 3.8-3.9 s); 400k rows no less, and held up to 387 MB.
WRITE_ROWS = 200_000


def render(plan: Plan, view: Fold, dest: Path) -> list[tuple[str | None, str | None, int]]:
    """One row per input row, in input order: the local verdict, else the ledger's, else pending.

    Written batch by batch (`write`), so the file is always whole and memory stays a few batches.
    Returns the (status, error_code, rows) counts of what it wrote, for the summary.
    """
    batches = plan.results(view)
    counts: Counter[tuple[str | None, str | None]] = Counter()

    def counted() -> Iterator[pl.DataFrame]:
        for frame in batches:
            for status, code, rows in frame.group_by("status", "error_code").len().iter_rows():
                counts[(status, code)] += rows
            yield frame.cast(RESULT_SCHEMA)  # type: ignore[arg-type]  # a dict of dtypes is accepted

    for stale in dest.parent.glob(f".{dest.name}.*.tmp"):  # left by a run killed mid-render; we hold the lock
        stale.unlink(missing_ok=True)
    try:
        write(counted(), dest)
        return [(status, code, rows) for (status, code), rows in counts.items()]
    except (OSError, pl.exceptions.PolarsError) as exc:
        if isinstance(exc, pl.exceptions.PolarsError) and isinstance(exc.__cause__, LedgerError):
            raise exc.__cause__ from None
        raise LedgerError(f"cannot write results file {dest}: {reason_of(exc)}") from exc


def write(frames: Iterator[pl.DataFrame], dest: Path) -> None:
    """Write `frames` (RESULT_SCHEMA, in order) to `dest`, whole or not at all (`_replace`).

    A CSV is written in pieces of WRITE_ROWS rows into one file handle, on a writer thread one
    piece behind (background.Writer), so at most three pieces are held whatever the disk's pace.
    A Parquet file is streamed by `sink_parquet` from the same frames.
    """

    def build(tmp: Path) -> None:
        if dest.name.endswith(".parquet"):

            def source(
                with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
            ) -> Iterator[pl.DataFrame]:
                yield from frames

            register_io_source(source, schema=pl.Schema(RESULT_SCHEMA)).sink_parquet(tmp)
            return
        with open(tmp, "wb") as fh, Writer() as writer:  # written on a thread while the next rows are made
            header = True
            for rows in _grouped(frames, WRITE_ROWS):
                writer.submit(_append_csv, fh, rows, header)
                header = False
            if header:  # no rows: the header alone
                writer.submit(_append_csv, fh, pl.DataFrame(schema=RESULT_SCHEMA), True)

    _replace(dest, build)


def _grouped(frames: Iterator[pl.DataFrame], rows: int) -> Iterator[pl.DataFrame]:
    """`frames` joined into frames of at least `rows` rows (the last may be shorter)."""
    held: list[pl.DataFrame] = []
    count = 0
    for frame in frames:
        held.append(frame)
        count += frame.height
        if count >= rows:
            yield pl.concat(held)
            held, count = [], 0
    if held:
        yield pl.concat(held)


def _append_csv(fh: BinaryIO, frame: pl.DataFrame, header: bool) -> None:
    safe_csv.neutralise(frame).write_csv(fh, include_header=header)


def sink(frame: pl.LazyFrame, dest: Path) -> None:
    """Stream `frame` into `dest`: Parquet by suffix, else CSV with its cells neutralised
    (`safe_csv`), whole or not at all (`_replace`). Raises OSError or PolarsError."""

    def build(tmp: Path) -> None:
        if dest.name.endswith(".parquet"):
            frame.sink_parquet(tmp)
        else:
            safe_csv.neutralise(frame).sink_csv(tmp)

    _replace(dest, build)


def _replace(dest: Path, build: Callable[[Path], None]) -> None:
    """`build(tmp)` writes a temp file beside `dest`, which is fsynced and renamed over `dest`,
    so the file is whole or absent. Raises OSError or PolarsError (the temp file removed)."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        build(tmp)
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
