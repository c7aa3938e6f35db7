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
import ctypes
import functools
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast

import polars as pl

from . import csv_blocks, safe_csv
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
    5M-row results file, 0.00 s after. Where the system has no such call, the fsync does it all."""
    fh.flush()
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
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
    When the file cannot be renamed into place as it is, each batch is then either copied (`copy`)
    or read back (`take`) exactly once, and its range let go of at once (`_release`): the disk
    holds about one results file, not two (with a single repeat in it, validate had needed room
    for both the file and its copy).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ranges: list[tuple[int, int]] = []
        self.counts: list[Counts] = []
        self.header_bytes = 0
        self._fh: BinaryIO | None = None
        self._fd: int | None = None  # read and hole-punched while the results are rendered

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
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def total(self) -> Counts:
        return sum(self.counts, Counter())

    def take(self, index: int) -> pl.DataFrame:
        """Batch `index`'s lines read back as they were added (RESULT_SCHEMA, cells restored),
        their range then let go of."""
        start, end = self.ranges[index]
        data = os.pread(self._source(), end - start, start)
        if len(data) != end - start:
            raise OSError(f"{self.path} ended early")
        frame = csv_blocks.parse(
            data, len(RESULT_SCHEMA), new_columns=list(RESULT_SCHEMA), schema=pl.Schema(RESULT_SCHEMA)
        )
        self._release(start, end)
        return safe_csv.restore(frame)

    def copy(self, index: int, out: BinaryIO) -> None:
        """Batch `index`'s lines appended to `out` as they are (by the kernel where it can), their
        range then let go of."""
        start, end = self.ranges[index]
        self._copy(start, end, out)
        self._release(start, end)

    def copy_header(self, out: BinaryIO) -> None:
        self._copy(0, self.header_bytes, out)

    def reopen(self) -> None:
        """Open the file written in pass 1 for `take` and `copy` (before either, on one thread)."""
        self._fd = os.open(self.path, os.O_RDWR)

    def _source(self) -> int:
        assert self._fd is not None, "reopen() first"
        return self._fd

    def _copy(self, start: int, end: int, out: BinaryIO) -> None:
        out.flush()
        src, done, length = self._source(), 0, end - start
        copy_file_range = getattr(os, "copy_file_range", None)  # Linux
        if copy_file_range is not None:
            with contextlib.suppress(OSError):  # not offered between these files: read and write below
                while done < length:
                    sent = copy_file_range(src, out.fileno(), length - done, start + done)
                    if sent == 0:
                        break
                    done += sent
        out.seek(0, os.SEEK_END)
        while done < length:
            piece = os.pread(src, min(8 << 20, length - done), start + done)
            if not piece:
                raise OSError(f"{self.path} ended early")
            out.write(piece)
            done += len(piece)

    def _release(self, start: int, end: int) -> None:
        """Give the disk blocks of [start, end) back (a hole punched; the file keeps its size)."""
        fallocate = _fallocate()
        if fallocate is not None:
            fallocate(self._source(), _PUNCH_HOLE | _KEEP_SIZE, start, end - start)  # -1 where unsupported: kept


_PUNCH_HOLE, _KEEP_SIZE = 0x02, 0x01  # linux/falloc.h


@functools.cache
def _fallocate() -> Callable[[int, int, int, int], int] | None:
    """libc's fallocate(2) (os has posix_fallocate only, which cannot punch a hole); None where absent."""
    try:
        call = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    call.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], call)
