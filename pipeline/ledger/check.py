"""`si-ingest ledger check`: list the damage a ledger holds, record by record.

`check` puts every journal line through the per-line check (resynchronising after a gap, so
one lost record is one finding), every snapshot row through its checksum, and the two files
through `store.locate`'s "do they belong together". A finding names the file, the record's
position and, where the damaged bytes still show it, the row_key and the input rows (source
file, row) the results file holds for it. `Scan` also serves `ledger repair` (repair.py): with
`keep`, it writes the sound records as runs as they are read (per snapshot partition, per
journal batch), and the rows damaged records name as `unknown` ones.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from .. import loader
from ..errors import InputError, LedgerDamaged, LedgerError, SavedRecords, reason_of
from ..keys import partition_hash, xxh3_64
from ..models import ErrorCode, Status
from ..workfile import write_work_file
from . import reader, records
from .lines import line_blocks, parse_lines
from .partition import iter_parts, partition_count
from .seal import cross_check
from .snapshot import Snapshot, open_snapshot, row_checksum
from .store import NOT_ITS_SNAPSHOT, Ledger, LedgerPaths, locate

MAX_LISTED = 200
DAMAGED_MESSAGE = "the ledger's record of this row was damaged; the request may have been sent"


@dataclass(frozen=True, slots=True)
class Finding:
    file: Path
    position: int | None  # 0-based record (line or row) index; None: the file as a whole
    problem: str
    row_key: str | None = None  # the row it concerns, where that can still be read


@dataclass
class Report:
    """What a check found. Only the first MAX_LISTED findings are kept (and listed), with the
    count of all and whether any names no row: a journal damaged over millions of lines is
    checked in bounded memory and linear time (a list searched for repeats took 2.9 s for
    8,000 damaged lines, and grew with their square)."""

    paths: LedgerPaths
    findings: list[Finding] = field(default_factory=list)  # the first MAX_LISTED
    rows: dict[str, list[str]] = field(default_factory=dict)  # row_key -> ["source:row", ...]
    count: int = 0  # every finding
    unattributed: bool = False  # some damage names no row: any unsettled row may be the one it concerned
    _whole: set[Finding] = field(default_factory=set, repr=False)  # file-level ones, found twice at times

    def add(self, finding: Finding, *, folds_in: bool = False) -> None:
        """`folds_in`: saved records a repair folds in whole; they make no unsettled row `unknown`."""
        if finding.position in (None, 0):  # a header or whole file: both locate() and the scan see it
            if finding in self._whole:
                return
            self._whole.add(finding)
        self.count += 1
        self.unattributed = self.unattributed or (finding.row_key is None and not folds_in)
        if len(self.findings) < MAX_LISTED:
            self.findings.append(finding)

    def render(self) -> str:
        if not self.count:
            return f"ledger of {self.paths.results}: no damage found"
        lines = [f"ledger of {self.paths.results}: {self.count} damaged record(s)"]
        for finding in self.findings:
            where = f"record {finding.position + 1}" if finding.position is not None else "whole file"
            line = f"  {finding.file.name} {where}: {finding.problem}"
            if finding.row_key is not None:
                rows = self.rows.get(finding.row_key) or ["not in the results file"]
                line += f"\n      row_key {finding.row_key}: {', '.join(rows[:5])}"
            lines.append(line)
        if self.count > len(self.findings):
            lines.append(f"  ... and {self.count - len(self.findings)} more")
        if self.unattributed:
            lines.append("some damage names no row: a repair marks every row not yet settled as `unknown`")
        lines.append(f"next: si-ingest ledger repair {self.paths.results}")
        return "\n".join(lines)


def check(results: Path, workdir: Path, *, least: int | None = None) -> Report:
    """The damage the ledger of `results` holds; `least`: the row_keys it held when the last run
    finished (seal.floor), so that records lost whole are found too."""
    report = Report(LedgerPaths(results))
    Scan(report, workdir).run(keep=False)
    if not report.count:  # records that read as whole may still be too few for the results file
        _against_results(report, workdir, least)
    name_rows(report)
    return report


def _against_results(report: Report, workdir: Path, least: int | None) -> None:
    """seal.cross_check, as a finding: rows the results file shows sent that the ledger lost, or
    fewer keys than `least`."""
    try:
        ledger = Ledger.open(report.paths.results, workdir, writable=False)
        check_results = not (ledger.view.empty or ledger.view.legacy_rows)
        if check_results or least is not None:
            cross_check(report.paths, ledger.view, workdir, least, results=check_results)
    except LedgerDamaged as exc:
        report.add(Finding(exc.path, exc.position, exc.reason, exc.row_key))
    except SavedRecords as exc:
        report.add(Finding(report.paths.results, None, str(exc)), folds_in=True)
    except LedgerError as exc:
        report.add(Finding(report.paths.results, None, str(exc)))


class Scan:
    """Reads every ledger file record by record; with `keep`, writes the sound records as runs."""

    def __init__(self, report: Report, workdir: Path) -> None:
        self.report = report
        self.workdir = workdir
        self.base_runs: list[Path] = []
        self.runs: list[Path] = []
        self.damage_runs: list[Path] = []
        self.recovered: list[Path] = []
        self.ledger_id: str | None = None
        self.snapshot_lost: str | None = None  # why the snapshot's keys, or some, cannot be read at all
        self.snapshot_rows: int | None = None  # the keys it holds, where its footer still says
        self._damaged: list[dict[str, Any]] = []

    def run(self, *, keep: bool) -> None:
        paths = self.report.paths
        (self.workdir / "locate").mkdir(exist_ok=True)
        foreign = None  # the snapshot here is not the one the journal extends: that one is lost
        try:
            locate(paths, self.workdir / "locate")
        except LedgerDamaged as exc:
            if exc.position is None or exc.position == 0:
                self._find(exc.path, exc.position, exc.reason)
            if exc.path == paths.snapshot and exc.position is None:
                self.snapshot_lost = exc.reason
            if exc.path == paths.journal and exc.position == 0 and exc.reason.startswith(NOT_ITS_SNAPSHOT):
                foreign = f"{paths.journal.name} extends another copy of it"
        except (LedgerError, OSError) as exc:
            self._find(paths.journal, None, str(exc))
        snapshot = self._snapshot(paths.snapshot, keep)
        if foreign is not None:
            self.snapshot_lost, self.snapshot_rows = foreign, None  # its count is another copy's
        if snapshot is not None:
            self.ledger_id = snapshot.meta.ledger_id
        self._journal(paths.journal, 0, keep)
        self.recovered = paths.saved_records()
        for i, copy in enumerate(self.recovered, start=1):
            self._journal(copy, i << 40, keep)
        self._flush_damaged(keep, at_least=1)

    def _flush_damaged(self, keep: bool, *, at_least: int) -> None:
        """The rows damaged records name, as a run (`unknown`), once `at_least` have gathered."""
        if len(self._damaged) < at_least:
            return
        if keep:
            self.damage_runs.append(self._write(records.record_frame(self._damaged), "damaged"))
        self._damaged = []

    def _find(self, file: Path, position: int | None, problem: str, row_key: str | None = None) -> None:
        self.report.add(Finding(file, position, problem, row_key))

    def _snapshot(self, path: Path, keep: bool) -> Snapshot | None:
        try:
            snapshot = open_snapshot(path)
        except LedgerDamaged as exc:
            self._find(path, None, exc.reason)
            self.snapshot_lost = exc.reason
            return None
        if snapshot is None:
            return None
        self.snapshot_rows = snapshot.rows
        try:
            scan = pl.scan_parquet(path).with_row_index("_pos")
            parts = partition_count(snapshot.rows)
            seen = 0
            for lo, hi in iter_parts(parts):
                frame = scan.filter(pl.col("kp").is_between(lo, hi)).collect()
                seen += frame.height
                ok = (pl.col("crc") == row_checksum()) & (pl.col("kp") == xxh3_64(pl.col("row_key")))
                ok = ok & pl.col("status").is_in(records.STATUSES)
                checked = frame.with_columns(_ok=ok.fill_null(False))
                for pos, key, key_ok in (
                    checked.filter(~pl.col("_ok"))
                    .select("_pos", "row_key", pl.col("kp") == xxh3_64(pl.col("row_key")))
                    .iter_rows()
                ):
                    self._find(path, pos, "fails its checksum", key if key_ok else None)
                    if key_ok and key is not None:
                        self._damaged.append(_unknown(key, -1))
                if keep:  # written partition by partition: the snapshot is never held whole
                    good = checked.filter(pl.col("_ok")).select(*records.STATE_SCHEMA, "legacy", "kp")
                    base = good.with_columns(q=pl.lit(-1, pl.Int64), intent=pl.lit(False))
                    self.base_runs.append(self._write(base.select(*reader.RUN_SCHEMA), "base"))
                self._flush_damaged(keep, at_least=reader.BATCH_LINES)
            if seen != snapshot.rows:
                self._find(path, None, f"{snapshot.rows - seen} records cannot be located")
                self.snapshot_lost = f"{snapshot.rows - seen} of its records cannot be located"
        except pl.exceptions.PolarsError as exc:
            self._find(path, None, f"unreadable ({reason_of(exc)})")
            self.snapshot_lost = f"unreadable ({reason_of(exc)})"
            for run in self.base_runs:  # an unreadable snapshot gives no records at all, as before
                run.unlink(missing_ok=True)
            self.base_runs = []
        return snapshot

    def _journal(self, path: Path, offset: int, keep: bool) -> None:
        try:
            info = reader.inspect(path)
        except LedgerDamaged as exc:
            self._find(path, exc.position, exc.reason)
            info = reader.JournalInfo(path, 2, None, None, _count_lines(path), 0)
        if info is None:
            return
        if info.ledger_id and self.ledger_id is None and offset == 0:
            self.ledger_id = info.ledger_id
        sound = reader.RunBuffer(lambda frame: self.runs.append(self._write(frame, "journal")))
        sequence = _Sequence()
        for first, block in line_blocks(path, info.lines):  # format 1 too: ~10k lines a block
            whole = self._sound_block(first, block, sequence, offset) if info.version == 2 else None
            if whole is None:  # some line is not sound (or a format 1 line): line by line, as it reads
                rows = []
                for pos, raw in enumerate(block.split(b"\n")[: block.count(b"\n") or 1], start=first):
                    record = self._line(path, info, pos, raw, sequence, offset)
                    if record is not None and pos > 0:
                        rows.append(records.to_row(record, offset + pos, legacy=info.version == 1))
                whole = records.record_frame(rows)
            if keep:
                sound.add(whole)
            self._flush_damaged(keep, at_least=reader.BATCH_LINES)
        sound.flush()

    @staticmethod
    def _sound_block(first: int, block: bytes, sequence: _Sequence, offset: int) -> pl.DataFrame | None:
        """A block's records when every line in it is sound and numbered on from the last sound
        one (vectorised: the per-line check costs ~15 us a line); else None."""
        if sequence.damaged_since:
            return None
        try:
            parsed = parse_lines(first, block)
            expected = parsed.with_columns(pos=pl.col("pos") - first + sequence.next)  # q each must carry
            decoded = records.decode_lines(expected)
        except pl.exceptions.PolarsError:
            return None
        if decoded.height == 0 or not decoded["ok"].all():
            return None
        sequence.advance(int(decoded["q"][-1]))
        at = pl.int_range(first, first + decoded.height, dtype=pl.Int64)  # positions in the file
        return decoded.with_columns(q=at + offset, _at=at).filter(pl.col("_at") > 0).select(*records.RECORD_SCHEMA)

    def _line(
        self, path: Path, info: reader.JournalInfo, pos: int, raw: bytes, sequence: _Sequence, offset: int
    ) -> dict[str, Any] | None:
        """The record if sound (None for the header); findings for what is not."""
        if info.version == 1:
            if pos == 0:
                return None
            try:
                return reader.v1_record(raw, pos, path)
            except LedgerDamaged as exc:
                self._damage(path, pos, exc.reason, exc.row_key, offset)
                return None
        verdict = records.check_line(raw, pos, sequence.next)
        if verdict.problem and verdict.problem.startswith("out of sequence"):
            q = _sequence(raw)  # its checksum held, so its number is its own
            if q is not None and q < sequence.next:  # a record repeated or moved back: it may undo a later one
                self._damage(path, pos, f"record number {q} again, after {sequence.next - 1}", verdict.row_key, offset)
                return None
            if q is not None:
                missing = q - sequence.next - sequence.damaged_since
                if missing > 0:  # more numbers skipped than damaged lines account for: records were lost
                    span = f" (numbers {sequence.next} to {q - 1})" if not sequence.damaged_since else ""
                    self._find(path, pos, f"{missing} record(s) before it are missing{span}")
                verdict = records.check_line(raw, pos, q)
                if verdict.record is None:  # sound bytes, wrong content: damaged, but its number stands
                    self._damage(path, pos, verdict.problem or "unreadable", verdict.row_key, offset)
                    sequence.advance(q)
                    return None
        if verdict.record is None:
            self._damage(path, pos, verdict.problem or "unreadable", verdict.row_key, offset)
            sequence.damaged_since += 1
            return None
        sequence.advance(int(verdict.record["q"]))
        return None if pos == 0 else verdict.record

    def _damage(self, path: Path, pos: int, problem: str, row_key: str | None, offset: int) -> None:
        self._find(path, pos, problem, row_key)
        if row_key is not None:
            self._damaged.append(_unknown(row_key, offset + pos))

    def _write(self, frame: pl.DataFrame, tag: str) -> Path:
        path = self.workdir / f"repair-{tag}-{len(self.runs)}-{uuid.uuid4().hex[:8]}.parquet"
        if "kp" not in frame.columns:
            frame = frame.with_columns(partition_hash())
        write_work_file(path, frame.select(*reader.RUN_SCHEMA).sort("kp").write_parquet, path)
        return path


class _Sequence:
    """The sequence number the next sound record should carry, and damaged lines since the last one."""

    def __init__(self) -> None:
        self.next = 0
        self.damaged_since = 0

    def advance(self, q: int) -> None:
        self.next = q + 1
        self.damaged_since = 0


def _unknown(row_key: str, q: int) -> dict[str, Any]:
    return {
        "q": q,
        "intent": False,
        "row_key": row_key,
        "status": Status.UNKNOWN.value,
        "error_code": ErrorCode.LEDGER_DAMAGED.value,
        "error_message": DAMAGED_MESSAGE,
        "attempts": 0,
        "legacy": False,
    }


def _sequence(raw: bytes) -> int | None:
    try:
        record = orjson.loads(raw.rpartition(b"\t")[0])
    except orjson.JSONDecodeError:
        return None
    q = record.get("q") if isinstance(record, dict) else None
    return q if isinstance(q, int) and not isinstance(q, bool) else None


def _count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 22), b""))


def name_rows(report: Report) -> None:
    """For the listed findings that name a row_key: the input rows the results file holds for it."""
    keys = sorted({f.row_key for f in report.findings if f.row_key is not None})
    results = report.paths.results
    if not keys or not results.exists():
        return
    try:
        for batch in loader.written_batches(results, ("row_key", "source", "source_row"), loader.WRITTEN_ROWS):
            for key, source, source_row in batch.filter(pl.col("row_key").is_in(keys)).iter_rows():
                report.rows.setdefault(key, []).append(f"{source} row {source_row}")
    except (OSError, InputError, pl.exceptions.PolarsError):
        report.rows.clear()
