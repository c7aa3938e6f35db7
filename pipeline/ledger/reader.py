"""Journal -> checked records, written as sorted runs for the fold; at any size, in bounded memory.

Format 2 lines are checked and decoded vectorised, a batch of lines at a time (`records`).
The first line that fails (bad bytes, a checksum, the sequence, an unknown status, a wrong
type, an unknown format version) stops the replay with LedgerDamaged naming its position:
a record that cannot be read may be the only trace of a request that left, so nothing
after it can be taken to mean "never sent". Only a last line without its newline is not
damage: that is a write cut short by a kill (FIELD-NOTES), and it is left out.

Format 1 journals (si-ingest 0.1: JSON lines without checksums or sequence numbers) are read
line by line in Python, once, when a ledger is upgraded; their keys are marked `legacy`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from ..errors import LedgerDamaged, reason_of
from ..keys import partition_hash
from ..workfile import write_work_file
from . import records
from .lines import read_lines
from .partition import write_run

V1_HEADER = b'{"journal":"si-ingest","version":1}'
BATCH_LINES = 250_000  # journal records per sorted run (~200 MB to sort and write 500k)
RUN_SCHEMA: dict[str, pl.DataType] = {**records.RECORD_SCHEMA, "kp": pl.UInt64()}


@dataclass(frozen=True, slots=True)
class JournalInfo:
    path: Path
    version: int  # 1 or 2
    ledger_id: str | None
    base: str | None  # the snapshot generation it extends
    lines: int  # complete lines, the header included
    valid_bytes: int  # bytes before a torn last line

    @property
    def last_seq(self) -> int:
        return self.lines - 1

    @property
    def has_records(self) -> bool:
        return self.lines > 1


def inspect(path: Path) -> JournalInfo | None:
    """Read a journal's header and size; None when there is no journal file."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline()
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LedgerDamaged(path, None, f"cannot be read ({reason_of(exc)})") from exc
    valid, lines = _complete_lines(path, size)
    if lines == 0:  # not even a whole header: a journal killed while being created
        return JournalInfo(path, 2, None, None, 0, 0)
    head = first.rstrip(b"\n")
    if head == V1_HEADER:
        return JournalInfo(path, 1, None, None, lines, valid)
    verdict = records.check_line(head, 0)
    if verdict.record is None:
        raise LedgerDamaged(path, 0, f"not an si-ingest journal header: {verdict.problem}")
    lid, base = verdict.record.get("lid"), verdict.record.get("base")
    if not isinstance(lid, str) or not (base is None or isinstance(base, str)):
        raise LedgerDamaged(path, 0, "its header names no ledger")
    return JournalInfo(path, 2, lid, base, lines, valid)


def _complete_lines(path: Path, size: int) -> tuple[int, int]:
    """(bytes up to the last newline, number of newlines), read in chunks."""
    count = 0
    last_newline = -1
    offset = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            n = chunk.count(b"\n")
            if n:
                count += n
                last_newline = offset + chunk.rfind(b"\n")
            offset += len(chunk)
    return last_newline + 1, count


def write_runs(info: JournalInfo, workdir: Path, prefix: str, source: Path | None = None) -> list[Path]:
    """Check every record and write them as sorted runs (`RUN_SCHEMA`) into `workdir`.

    `source` reads the lines from another file (a copy of the journal) than `info.path`.
    """
    runs: list[Path] = []

    def write(frame: pl.DataFrame) -> None:
        path = workdir / f"{prefix}-{len(runs):05d}.parquet"
        write_work_file(path, write_run, frame.with_columns(partition_hash()), path)  # a full disk: one line
        runs.append(path)

    buffer = RunBuffer(write)
    for batch in records_of(info, source):  # decoded a block at a time, written BATCH_LINES at a time
        buffer.add(batch)
    buffer.flush()
    return runs


class RunBuffer:
    """Record frames gathered until BATCH_LINES records, then handed to `write` as one (a sorted
    run): blocks decode small, runs stay few."""

    def __init__(self, write: Callable[[pl.DataFrame], None]) -> None:
        self._write = write
        self._frames: list[pl.DataFrame] = []
        self._held = 0

    def add(self, frame: pl.DataFrame) -> None:
        if frame.height:
            self._frames.append(frame)
            self._held += frame.height
        if self._held >= BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        if self._frames:
            self._write(pl.concat(self._frames))
            self._frames, self._held = [], 0


def records_of(info: JournalInfo, source: Path | None = None) -> Iterator[pl.DataFrame]:
    """The journal's records after the header, checked, in batches (RECORD_SCHEMA + legacy)."""
    path = source or info.path
    if info.lines <= 1:
        return
    if info.version == 1:
        yield from _v1_records(info, path)
        return
    batches = read_lines(path, info.lines)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except pl.exceptions.PolarsError:  # a line the reader itself refuses (a NUL byte in it)
            raise _damage(info.path, path, 0, info.lines - 1) from None
        except OSError as exc:
            raise LedgerDamaged(info.path, None, f"cannot be read ({reason_of(exc)})") from exc
        try:
            decoded = records.decode_lines(batch)
            bad = decoded.filter(~pl.col("ok"))
        except pl.exceptions.PolarsError:
            bad = batch
        if bad.height:
            raise _damage(info.path, path, int(bad["pos"][0]), int(batch["pos"][-1]))
        yield decoded.filter(pl.col("pos") > 0).select(*records.RECORD_SCHEMA)


def _damage(shown: Path, path: Path, start: int, end: int) -> LedgerDamaged:
    """Name the first bad line in positions [start, end] with the per-line check's reason."""
    for pos, raw in iter_lines(path, end + 1):
        if pos >= start:
            verdict = records.check_line(raw, pos)
            if verdict.record is None:
                return LedgerDamaged(shown, pos, verdict.problem or "unreadable record", verdict.row_key)
    return LedgerDamaged(shown, start, "unreadable record")


def iter_lines(path: Path, lines: int) -> Iterator[tuple[int, bytes]]:
    """(position, bytes without the newline) of the first `lines` lines, for per-line checks."""
    with open(path, "rb") as fh:
        for pos, line in enumerate(fh):
            if pos >= lines:
                return
            yield pos, line.rstrip(b"\n")


def _v1_records(info: JournalInfo, path: Path) -> Iterator[pl.DataFrame]:
    rows: list[dict[str, Any]] = []
    for pos, raw in iter_lines(path, info.lines):
        if pos == 0:
            continue
        rows.append(records.to_row(v1_record(raw, pos, path), pos, legacy=True))
        if len(rows) >= BATCH_LINES:
            yield records.record_frame(rows)
            rows = []
    if rows:
        yield records.record_frame(rows)


def v1_record(raw: bytes, pos: int, path: Path) -> dict[str, Any]:
    """Check one format 1 line: an intent {"i"} or an outcome {"k", "s", ...}; raises LedgerDamaged."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise LedgerDamaged(path, pos, "not a JSON record (format 1 journal)") from None
    if isinstance(record, dict) and isinstance(record.get("i"), str) and len(record) == 1:
        return record
    if not isinstance(record, dict) or not isinstance(record.get("k"), str):
        raise LedgerDamaged(path, pos, "not a format 1 intent or outcome record")
    if record.get("s") not in records.STATUSES:
        raise LedgerDamaged(path, pos, f"unknown status {record.get('s')!r}", record["k"])
    for name in ("n", "id", "h"):
        value = record.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise LedgerDamaged(path, pos, f"field {name!r} has the wrong type", record["k"])
    for name in ("c", "m", "t"):
        if record.get(name) is not None and not isinstance(record[name], str):
            raise LedgerDamaged(path, pos, f"field {name!r} has the wrong type", record["k"])
    return record
