"""The plan + the ledger's state -> the results file, written whole or not at all."""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl
from polars.io.plugins import register_io_source

from . import safe_csv
from .background import Writer
from .errors import InputError, Interrupted, LedgerError, reason_of
from .ledger.fold import Fold
from .ledger.snapshot import fsync_dir, fsync_file
from .models import RESULT_COLUMNS
from .plan import Plan
from .result_rows import RESULT_SCHEMA, Counts, Prerendered, append_csv, count

# Rows per write of a CSV results file. polars' streaming `sink_csv`, fed from an IO source,
# ran ahead of its writer: in 6 of 6 bench runs the 5M-row validate peaked while rendering, at
# 355-501 MB, against 305-320 MB while planning. Written here in pieces, the render peaked
# below planning in 4 of 4 (bench/PROFILE.md). Pieces of one 50k batch cost 1.2 s more per 5M
# rows than the sink (each write waits for the next piece); 200k rows cost ~0.55 s (render
# 3.2-3.3 -> 3.8-3.9 s); 400k rows no less, and held up to 387 MB.
WRITE_ROWS = 200_000

Piece = pl.DataFrame | Callable[[BinaryIO], None]  # rows, or a writer of lines already made


def render(plan: Plan, view: Fold, dest: Path) -> list[tuple[str | None, str | None, int]]:
    """One row per input row, in input order: the local verdict, else the ledger's, else pending.

    Written batch by batch (`write`), so the file is always whole and memory stays a few batches;
    a dry run that wrote its lines in pass 1 installs those instead (`_install_prerendered`).
    Returns the (status, error_code, rows) counts of what it wrote, for the summary.
    """
    for stale in dest.parent.glob(f".{dest.name}.*.tmp"):  # left by a run killed mid-render; we hold the lock
        stale.unlink(missing_ok=True)
    counts: Counts = Counter()
    try:
        if plan.prerendered is not None:
            counts = _install_prerendered(plan, plan.prerendered, view, dest)
        else:
            batches = plan.results(view)

            def counted() -> Iterator[pl.DataFrame]:
                for frame in batches:
                    counts.update(count(frame))
                    yield frame

            write(counted(), dest)
        return [(status, code, rows) for (status, code), rows in counts.items()]
    except (OSError, pl.exceptions.PolarsError) as exc:
        if isinstance(exc, pl.exceptions.PolarsError) and isinstance(exc.__cause__, (LedgerError, Interrupted)):
            raise exc.__cause__ from None  # raised in a callback polars ran (a signal's: stopping.py)
        raise LedgerError(f"cannot write results file {dest}: {reason_of(exc)}") from exc


def write(pieces: Iterator[Piece], dest: Path) -> None:
    """Write `pieces` (frames of RESULT_SCHEMA, in order) to `dest`, whole or not at all (`_replace`).

    A CSV is written in pieces of WRITE_ROWS rows into one file handle, on a writer thread one
    piece behind (background.Writer), so at most three pieces are held whatever the disk's pace;
    a piece that is a callable appends lines made earlier itself (validate's, result_rows.py).
    A Parquet file is streamed by `sink_parquet` from the same frames (no callables).
    """

    def build(tmp: Path) -> None:
        if dest.name.endswith(".parquet"):

            def source(
                with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
            ) -> Iterator[pl.DataFrame]:
                for piece in pieces:
                    assert isinstance(piece, pl.DataFrame), "a Parquet file is written from frames"
                    yield piece

            register_io_source(source, schema=pl.Schema(RESULT_SCHEMA)).sink_parquet(tmp)
            return
        with open(tmp, "wb") as fh, Writer() as writer:  # written on a thread while the next rows are made
            writer.submit(append_csv, fh, pl.DataFrame(schema=RESULT_SCHEMA), True)  # the header
            for piece in _grouped(pieces, WRITE_ROWS):
                if isinstance(piece, pl.DataFrame):
                    writer.submit(append_csv, fh, piece, False)
                else:
                    writer.submit(piece, fh)

    _replace(dest, build)


def _install_prerendered(plan: Plan, pre: Prerendered, view: Fold, dest: Path) -> Counts:
    """A dry run's results (result_rows.py): the file written in pass 1 itself where no row has
    a verdict, else its batches copied, those with verdicts rendered again."""
    if not plan.verdicts_for(view):
        _install(pre.path, dest)
        return pre.total()
    counts: Counts = Counter()

    def pieces() -> Iterator[Piece]:
        for index, rows in plan.prerendered_results(view):
            if rows is None:
                counts.update(pre.counts[index])
                yield functools.partial(pre.copy, index)
            else:
                counts.update(count(rows))
                yield rows

    pre.reopen()
    try:
        write(pieces(), dest)
    finally:
        pre.close()
    return counts


def _grouped(pieces: Iterator[Piece], rows: int) -> Iterator[Piece]:
    """Consecutive frames of `pieces` joined into frames of at least `rows` rows (the last of a
    run may be shorter); any other piece passed on in its place."""
    held: list[pl.DataFrame] = []
    height = 0
    for piece in pieces:
        if not isinstance(piece, pl.DataFrame):
            if held:
                yield pl.concat(held)
                held, height = [], 0
            yield piece
            continue
        held.append(piece)
        height += piece.height
        if height >= rows:
            yield pl.concat(held)
            held, height = [], 0
    if held:
        yield pl.concat(held)


def sink(frame: pl.LazyFrame, dest: Path) -> None:
    """Stream `frame` into `dest`: Parquet by suffix, else CSV with its cells neutralised
    (`safe_csv`), whole or not at all (`_replace`). Raises OSError or PolarsError."""

    def build(tmp: Path) -> None:
        if dest.name.endswith(".parquet"):
            frame.sink_parquet(tmp)
        else:
            safe_csv.neutralise(frame).sink_csv(tmp)

    _replace(dest, build)


def sink_parts(parts: list[Path], dest: Path, schema: pl.Schema | dict[str, Any]) -> None:
    """Parquet `parts` (each a batch) into `dest` as `sink` writes a frame. A CSV is written part
    by part: polars' streaming CSV sink read ahead of its writer, and an error file of 5M rows
    peaked at 568 MB against 275 MB for 1M (found by a review, h11b)."""
    if dest.name.endswith(".parquet") or not parts:
        sink(pl.scan_parquet(parts) if parts else pl.LazyFrame(schema=schema), dest)
        return

    def build(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            for index, part in enumerate(parts):
                safe_csv.neutralise(pl.read_parquet(part)).write_csv(fh, include_header=index == 0)

    _replace(dest, build)


def _replace(dest: Path, build: Callable[[Path], None]) -> None:
    """`build(tmp)` writes a temp file beside `dest`, which is fsynced and renamed over `dest`,
    so the file is whole or absent. Raises OSError or PolarsError (the temp file removed)."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        build(tmp)
        _install(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _install(tmp: Path, dest: Path) -> None:
    """`tmp`, written whole, fsynced and renamed over `dest` (its folder fsynced too)."""
    fsync_file(tmp)
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


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
    require_columns(path, frame.columns)
    return frame


def require_columns(path: Path, names: Sequence[str]) -> None:
    """InputError unless `names`, the columns of `path`, hold every results column."""
    missing = [c for c in RESULT_COLUMNS if c not in names]
    if missing:
        raise InputError(f"{path} is not an si-ingest results file (no column {missing[0]})")
