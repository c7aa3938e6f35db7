"""The results file's rows: their types, how a batch of them is written, and `validate`'s
results written while it plans (`Prerendered`).

Why `validate` writes its results during pass 1: a dry run sends nothing, so a row's line in the
results file is known as soon as its batch is validated, unless pass 2 finds a verdict for it
(a repeat of an earlier row, or a row the ledger knows). Writing the lines then, instead of
spilling the batch to Parquet and rendering it at the end, saves the spill's write and read
(0.45 + 0.17 CPU-us per row) and the whole render pass, which ran after planning on about one
core: validate of 5M rows went from 9.2-9.5 s to 6.2 s, 11.3 -> 8.1 CPU-s user (A/B, same
machine, same minutes; with the two changes of ab4adb3).

Only where the ledger is empty (the first validate into a results path, or of each export into
its own): against a ledger most rows may have a verdict, and their lines would be written twice
(validate of 10M rows against a ledger of the same rows: 36.6 s, against 27.9 s through spills).
When pass 2 finds no verdict at all, the file written in pass 1 is the results file: fsynced and
renamed into place. Otherwise each batch's lines are copied as they are, or, for a batch with
verdicts (repeats), read back and written again with them, by the same `Plan.rows_of` that
renders a run's results, so the two can never differ.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from pathlib import Path
from typing import BinaryIO

import polars as pl

from . import safe_csv
from .models import EXTRA_RESULT_COLUMNS, RESULT_COLUMNS

RESULT_SCHEMA: dict[str, type[pl.DataType]] = {
    **dict.fromkeys((*RESULT_COLUMNS, *EXTRA_RESULT_COLUMNS), pl.String),
    "source_row": pl.Int64,
    "sir_id": pl.Int64,
    "attempts": pl.Int64,
    "http_status": pl.Int64,
}

Counts = Counter[tuple[str | None, str | None]]  # (status, error_code) -> rows


def append_csv(fh: BinaryIO, frame: pl.DataFrame, header: bool) -> None:
    """`frame`'s rows (RESULT_SCHEMA) at the end of a results CSV, cells neutralised (safe_csv),
    their writing to disk started at once (`start_writeback`)."""
    start = fh.tell()
    safe_csv.neutralise(frame).write_csv(fh, include_header=header)
    start_writeback(fh, start)


def start_writeback(fh: BinaryIO, start: int) -> None:
    """Start writing what `fh` holds from `start` to the disk now, in the background (Linux:
    posix_fadvise DONTNEED kicks off writeback of the dirty range), so the fsync before the file
    is renamed into place finds little left to do: it had waited 0.5 s for the 1.1 GB of a
    5M-row results file, 0.00 s after."""
    fh.flush()
    with contextlib.suppress(OSError):  # a file system without it: the fsync does all the work, as before
        os.posix_fadvise(fh.fileno(), start, fh.tell() - start, os.POSIX_FADV_DONTNEED)


def count(frame: pl.DataFrame) -> Counts:
    """(status, error_code) -> rows of a batch of results rows, for the run's summary."""
    counts: Counts = Counter()
    for status, code, rows in frame.group_by("status", "error_code").len().iter_rows():
        counts[(status, code)] += rows
    return counts


class Prerendered:
    """A results CSV written batch by batch in pass 1, and where each batch's lines are.

    `add` is called from the planner's writer thread (one thread, so the batches land in input
    order); `ranges[i]` is then the byte range of batch i's lines and `counts[i]` their counts.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ranges: list[tuple[int, int]] = []
        self.counts: list[Counts] = []
        self.header_bytes = 0
        self._fh: BinaryIO | None = None

    def start(self) -> None:
        """Create the file with the header line (`close` closes it, whatever the plan's fate)."""
        self._fh = open(self.path, "wb")  # noqa: SIM115 - closed by `close`
        append_csv(self._fh, pl.DataFrame(schema=RESULT_SCHEMA), True)
        self.header_bytes = self._fh.tell()

    def add(self, frame: pl.DataFrame) -> None:
        assert self._fh is not None, "start() first"
        start = self._fh.tell()
        append_csv(self._fh, frame, False)
        end = self._fh.tell()
        self.ranges.append((start, end))
        self.counts.append(count(frame))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()

    def total(self) -> Counts:
        return sum(self.counts, Counter())

    def read(self, index: int) -> pl.DataFrame:
        """Batch `index`'s lines read back as they were added (RESULT_SCHEMA, cells restored)."""
        start, end = self.ranges[index]
        with open(self.path, "rb") as fh:
            fh.seek(start)
            data = fh.read(end - start)
        frame = pl.read_csv(data, has_header=False, new_columns=list(RESULT_SCHEMA), schema=pl.Schema(RESULT_SCHEMA))
        return safe_csv.restore(frame)

    def copy(self, index: int, out: BinaryIO) -> None:
        """Batch `index`'s lines appended to `out` as they are (by the kernel where it can)."""
        start, end = self.ranges[index]
        self._copy(start, end, out)

    def copy_header(self, out: BinaryIO) -> None:
        self._copy(0, self.header_bytes, out)

    def _copy(self, start: int, end: int, out: BinaryIO) -> None:
        out.flush()
        with open(self.path, "rb") as src:
            _copy_range(src, out, start, end - start)


def _copy_range(src: BinaryIO, out: BinaryIO, offset: int, length: int) -> None:
    done = 0
    try:
        while done < length:
            sent = os.copy_file_range(src.fileno(), out.fileno(), length - done, offset + done)
            if sent == 0:
                break
            done += sent
    except OSError:  # not offered across these file systems: read and write
        pass
    if done < length:
        src.seek(offset + done)
        while done < length:
            piece = src.read(min(8 << 20, length - done))
            if not piece:
                raise OSError(f"{src.name} ended early")
            out.write(piece)
            done += len(piece)
    out.seek(0, 2)
