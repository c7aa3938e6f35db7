"""The ledger of one results file: its files, whether they belong together, and its life cycle.

    <results>.journal          the log: a header, then intents and outcomes (journal.py);
                               after compaction one outcome per row_key
    <results>.ledger.parquet   the snapshot, once the ledger is large (snapshot.py)

Opening (under the run lock) checks that the files belong together: the journal's header
names its ledger and the snapshot generation it extends. A journal already folded into the
snapshot (a compaction killed before the journal was reset) is recognised by the snapshot's
`parent`/`through`. Anything else that does not fit (a missing half, another ledger's file,
a damaged record) is refused: the run stops before any request (exit 2) and says how to go
on. A results file that records created or unknown rows but has no ledger beside it is
refused too, unless `--new-ledger` says to start one on purpose.

The state to plan against is the snapshot and the journal's records folded on the fly
(fold.py). A run appends to the journal (after cutting a torn last line). At the end,
compaction takes the cheapest form that keeps reads fast, each written to a temp file,
fsynced and renamed (a kill leaves the old form or the new one, both complete):
- a small ledger (no snapshot, at most SNAPSHOT_ROWS keys) is rewritten as a journal of one
  outcome per key, as in 0.1 (keys left in flight become `unknown` outcomes);
- past that, the journal's own keys are compacted the same way while they stay under a
  quarter of the snapshot (or JOURNAL_ROWS), so a nightly run does not rewrite a large
  snapshot; beyond, everything is folded into a new snapshot and the journal starts empty.
A format 1 journal (0.1) is upgraded by the first writable open and kept as `.journal.v1`.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from .. import loader
from ..errors import ConfigError, InputError, LedgerDamaged, LedgerError, SavedRecords, reason_of
from ..models import Status
from . import reader, records
from .fold import Fold
from .journal import OWN_COPY, Journal
from .snapshot import Snapshot, SnapshotMeta, fsync_dir, open_snapshot, write_snapshot

SENT_STATUSES = (Status.CREATED.value, Status.UNKNOWN.value)
# a journal beside a snapshot that is not the one it extends (check.py: that one is lost)
NOT_ITS_SNAPSHOT = ("it belongs to another ledger than", "it does not continue the snapshot")
SNAPSHOT_ROWS = 250_000  # keys above which the state moves into a Parquet snapshot
JOURNAL_ROWS = 1_000_000  # journal records kept beside a snapshot before folding into it


@dataclass(frozen=True, slots=True)
class LedgerPaths:
    results: Path

    @property
    def journal(self) -> Path:
        return self.results.with_name(self.results.name + ".journal")

    @property
    def snapshot(self) -> Path:
        return self.results.with_name(self.results.name + ".ledger.parquet")

    @property
    def v1_backup(self) -> Path:
        return self.results.with_name(self.results.name + ".journal.v1")

    @property
    def workdir(self) -> Path:
        return self.results.with_name(self.results.name + ".work")

    @property
    def lock(self) -> Path:
        return self.results.with_name(self.results.name + ".lock")

    @property
    def owned(self) -> tuple[Path, ...]:
        """The files of this results file and its ledger, which no other output may replace."""
        return (self.results, self.journal, self.snapshot, self.lock, self.v1_backup)

    def refuse_odd_files(self) -> None:
        """LedgerError where one of these files exists and is not a regular file (a pipe, a
        device, a folder): opening a pipe to read waits for a writer, and a run had hung there
        before its first request, forever."""
        for path in self.owned:
            try:
                mode = path.stat().st_mode
            except OSError:  # absent (or unreadable: its own open says so)
                continue
            if not stat.S_ISREG(mode):
                what = "a folder" if stat.S_ISDIR(mode) else "a pipe" if stat.S_ISFIFO(mode) else "a special file"
                raise LedgerError(f"{path} is not a regular file ({what}); move it away (nothing was sent)")

    def recovered(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return self.results.with_name(f"{self.results.name}.journal.recovered-{stamp}")

    def saved_records(self) -> list[Path]:
        """Records saved by runs that lost their journal (`recovered`), not yet folded in by
        `ledger repair` (which marks each `.merged`)."""
        found = sorted(self.results.parent.glob(glob.escape(self.journal.name) + ".recovered-*"))
        return [p for p in found if not p.name.endswith(".merged")]

    @classmethod
    def of_journal(cls, journal: Path) -> LedgerPaths:
        return cls(journal.with_name(journal.name.removesuffix(".journal")))


@dataclass(frozen=True, slots=True)
class Located:
    """The ledger files found beside a results file, checked to belong together."""

    journal: reader.JournalInfo | None
    snapshot: Snapshot | None
    ledger_id: str
    runs: list[Path]  # the journal's records not yet in the snapshot, as sorted runs
    stale_journal: bool = False  # its records are all in the snapshot already (a reset was cut short)

    @property
    def fresh(self) -> bool:
        """No ledger: no snapshot and no journal with a whole header."""
        return self.snapshot is None and (self.journal is None or self.journal.lines == 0)

    @property
    def base(self) -> str | None:
        return self.snapshot.meta.generation if self.snapshot is not None else None

    def fold(self, *, resolve: bool = True) -> Fold:
        lines = self.journal.lines if self.journal is not None else 0
        return Fold(self.snapshot, self.runs, lines, resolve=resolve)


def locate(paths: LedgerPaths, workdir: Path, *, new_ledger: bool = False) -> Located:
    """Find and check the ledger's files; replay the journal's unfolded records into `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    info = reader.inspect(paths.journal)
    snap = open_snapshot(paths.snapshot)
    if new_ledger and (info is not None or snap is not None):
        raise ConfigError(
            f"--new-ledger starts a ledger where there is none, but {paths.journal.name} or "
            f"{paths.snapshot.name} exists beside {paths.results}; move them away first if that is what you mean"
        )
    if info is None and snap is None:
        return Located(None, None, uuid.uuid4().hex, [])
    if info is None:
        raise LedgerDamaged(paths.journal, None, f"it is missing, while its snapshot {paths.snapshot.name} is there")
    if info.version == 1:
        if snap is not None and snap.meta.upgraded_from_v1:  # upgraded, killed before the journal's reset
            return Located(info, snap, snap.meta.ledger_id, [], stale_journal=True)
        if snap is not None:
            raise LedgerDamaged(paths.journal, 0, "a format 1 journal beside a format 2 snapshot")
        return Located(info, None, uuid.uuid4().hex, reader.write_runs(info, workdir, "journal"))
    if info.lines == 0:
        if snap is not None:
            raise LedgerDamaged(paths.journal, 0, "the journal is empty (not even its header is whole)")
        return Located(info, None, uuid.uuid4().hex, [])
    assert info.ledger_id is not None
    if snap is None and info.base is not None:
        raise LedgerDamaged(paths.snapshot, None, f"it is missing, while {paths.journal.name} extends it")
    if snap is not None and info.ledger_id != snap.meta.ledger_id:
        raise LedgerDamaged(paths.journal, 0, f"{NOT_ITS_SNAPSHOT[0]} {paths.snapshot.name}")
    folded = snap is not None and info.base == snap.meta.parent and info.last_seq <= snap.meta.through
    if snap is not None and info.base != snap.meta.generation and not folded:
        raise LedgerDamaged(paths.journal, 0, f"{NOT_ITS_SNAPSHOT[1]} {paths.snapshot.name}")
    runs = reader.write_runs(info, workdir, "journal") if info.has_records and not folded else []
    return Located(info, snap, info.ledger_id, runs, stale_journal=folded)


class Ledger:
    """An opened ledger: `view` is the state to plan against; `journal()` the log to append to."""

    def __init__(self, paths: LedgerPaths, workdir: Path, found: Located) -> None:
        self.paths = paths
        self.workdir = workdir
        self.found = found
        self.view = found.fold()
        self.upgraded = False  # a format 1 journal was upgraded
        self._next_seq = found.journal.lines if found.journal is not None else 0

    @property
    def unanswered(self) -> int:
        """Rows a killed run left in flight (known once the view has been read)."""
        return self.view.unanswered

    @classmethod
    def open(cls, results: Path, workdir: Path, *, writable: bool, new_ledger: bool = False) -> Ledger:
        paths = LedgerPaths(results)
        saved = paths.saved_records()
        if saved:  # a run lost its journal and saved its records there: without them rows sent look unsent
            raise SavedRecords(
                f"{saved[0].name} beside {results.name} holds the records of a run that lost its journal; nothing"
                f" was sent. `si-ingest ledger repair {results}` folds them into the ledger"
            )
        try:
            found = locate(paths, workdir, new_ledger=new_ledger)
            if found.fresh and not new_ledger:
                _refuse_if_results_show_sends(paths)
                _refuse_if_a_twin_has_a_ledger(paths)
            ledger = cls(paths, workdir, found)
            if writable:
                ledger.prepare_to_append()
            return ledger
        except LedgerDamaged as exc:
            exc.results = results
            raise

    def prepare_to_append(self) -> None:
        """Make the journal ready for this run's records: created if there is none, a torn last
        line cut off, a format 1 journal upgraded (its copy kept). A run calls it only once every
        check before sending has passed, so a run refused at start leaves the files as it found
        them (a refused run had left a new empty journal, and `--new-ledger` was then refused)."""
        info = self.found.journal
        if info is not None and info.version == 1 and not self.paths.v1_backup.exists():
            shutil.copy2(info.path, self.paths.v1_backup)  # kept as it was, before anything changes
        if info is None or info.lines == 0 or self.found.stale_journal:
            self._rewrite_journal(iter(()), self.found.base)  # new, or a fold whose reset was cut short
        elif info.version == 1:
            self.compact()
            self.upgraded = True
        elif os.path.getsize(info.path) != info.valid_bytes:
            with open(info.path, "rb+") as fh:  # a torn last line: a write cut short by a kill
                fh.truncate(info.valid_bytes)
                os.fsync(fh.fileno())

    def journal(self, *, fsync: bool) -> Journal:
        journal = Journal(self.paths.journal, fsync=fsync, next_seq=self._next_seq, own_copy=self.workdir / OWN_COPY)
        journal.open()
        return journal

    def finish(self, journal: Journal) -> Path | None:
        """Compact after the run; returns where the run's records were saved if the journal was lost.

        When the journal was deleted, replaced or moved during the run, nothing on disk is
        touched: this run's records are copied out of the open descriptor to a new file
        (returned), and the view folds them in, so the results still show every row sent.
        """
        journal.flush()
        journal.check_still_ours()
        if journal.lost:
            copy = self.paths.recovered()
            try:
                journal.copy_to(copy)
            except OSError as exc:  # the folder itself moved away or removed: it had been a crash (exit 4)
                journal.close()
                raise LedgerError(
                    f"{journal.error or 'the journal was lost'}, and this run's records could not be saved to {copy}"
                    f" ({reason_of(exc)}); they are in the journal file wherever it went (moved with its folder?):"
                    f" put it back and run `si-ingest ledger repair {self.paths.results}`"
                ) from exc
            journal.close()
            info = reader.inspect(copy)
            assert info is not None
            runs = [*self.found.runs, *reader.write_runs(info, self.workdir, "recovered", source=copy)]
            self.view = Fold(self.found.snapshot, runs, self.view.journal_records + info.lines)
            return copy
        journal.close()
        if journal.error is not None:
            raise journal.error
        if journal.records or self.found.runs:
            self.compact()
        return None

    def compact(self) -> None:
        """Fold the journal into its cheapest durable form (see the module docstring)."""
        found = locate(self.paths, self.workdir / f"compact-{uuid.uuid4().hex[:8]}")
        self.found = found
        info, snap = found.journal, found.snapshot
        journal_lines = info.lines if info is not None else 0
        everything = found.fold()
        if snap is None and everything.rows <= SNAPSHOT_ROWS:
            self._rewrite_journal(everything.partitions(), None)
        elif snap is not None and journal_lines <= max(JOURNAL_ROWS, snap.rows // 4):
            self._rewrite_journal(Fold(None, found.runs, journal_lines).partitions(), snap.meta.generation)
        else:
            upgrading = info is not None and info.version == 1
            parent = info.base if info is not None and not upgrading else None
            through = info.last_seq if info is not None and not upgrading else 0
            meta = SnapshotMeta(found.ledger_id, uuid.uuid4().hex, parent, through, upgraded_from_v1=upgrading)
            write_snapshot(self.paths.snapshot, meta, everything.partitions)
            self._rewrite_journal(iter(()), meta.generation)
        self.found = locate(self.paths, self.workdir / f"compact-{uuid.uuid4().hex[:8]}")
        self.view = self.found.fold()
        self._next_seq = self.found.journal.lines if self.found.journal is not None else 0

    def _rewrite_journal(self, state: Iterator[pl.DataFrame], base: str | None) -> None:
        self._next_seq = rewrite_journal(self.paths.journal, self.found.ledger_id, base, state)


def same_file(a: Path, b: Path) -> bool:
    """`a` and `b` name one file (links followed), whether or not it exists yet."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def rewrite_journal(path: Path, ledger_id: str, base: str | None, state: Iterator[pl.DataFrame]) -> int:
    """Write a journal of a header and one outcome per row of `state` (temp, fsync, rename).

    Returns the sequence number the next record will carry.
    """
    tmp = path.with_name(path.name + ".compact")
    seq = 1
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            fh.write(records.header(0, ledger_id, base))
            for frame in state:
                if frame.height:
                    records.outcome_lines(frame, seq).write_csv(fh, include_header=False, quote_style="never")
                    seq += frame.height
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except (OSError, pl.exceptions.PolarsError) as exc:  # polars' write_csv raises an OSError without errno
        tmp.unlink(missing_ok=True)
        raise LedgerError(
            f"cannot write journal {path}: {reason_of(exc)}; the journal as it was is kept, and a rerun goes on from it"
        ) from exc
    return seq


def write_state(paths: LedgerPaths, ledger_id: str, rows: int, state: Callable[[], Iterator[pl.DataFrame]]) -> None:
    """Make `state()` (at most `rows` keys, partitions in kp order) the whole ledger, in the form
    compaction would choose; any snapshot that is not part of it is removed last."""
    if rows <= SNAPSHOT_ROWS:
        rewrite_journal(paths.journal, ledger_id, None, state())
        paths.snapshot.unlink(missing_ok=True)
    else:
        meta = SnapshotMeta(ledger_id, uuid.uuid4().hex, None, 0)
        write_snapshot(paths.snapshot, meta, state)
        rewrite_journal(paths.journal, ledger_id, meta.generation, iter(()))
    fsync_dir(paths.journal.parent)


def _refuse_if_a_twin_has_a_ledger(paths: LedgerPaths) -> None:
    """`--results r.parquet` where `r.csv` has a ledger: the suffix only picks the results file's
    format, but each path has its own ledger, so the switch had started a new one beside the old
    and sent every row again (300 of 300, exit 0: found by a review, h7c)."""
    name = paths.results.name
    for mine, other in ((".csv", ".parquet"), (".parquet", ".csv")):
        if name.endswith(mine):
            twin = LedgerPaths(paths.results.with_name(name[: -len(mine)] + other))
            if twin.journal.exists() or twin.snapshot.exists():
                raise LedgerError(
                    f"{twin.journal.name} beside {name} is the ledger of {twin.results.name}, and {name} has none: use"
                    f" --results {twin.results.name} (its suffix only picks the format), or pass --new-ledger to start"
                    f" a separate ledger (rows {twin.results.name}'s ledger recorded may then be sent again)"
                )


def sends_recorded(results: Path) -> int:
    """Rows a results file records as sent (created or unknown), 0 where there is no file; an
    InputError (or an OS or polars error) where it cannot be read as one the tool wrote."""
    if not results.exists():
        return 0
    return loader.count_written(results, "status", SENT_STATUSES)  # bounded: not pl.scan_csv


def _refuse_if_results_show_sends(paths: LedgerPaths) -> None:
    """A results file that records rows sent, with no ledger beside it, is never taken as a first run."""
    results = paths.results
    try:
        sent = sends_recorded(results)
    except (OSError, InputError, pl.exceptions.PolarsError):
        raise LedgerError(
            f"{results} exists but cannot be read as an si-ingest results file, and has no ledger beside it; "
            "choose another --results path"
        ) from None
    if sent:
        raise LedgerError(
            f"{results} records {sent} rows sent (created or unknown) but its ledger ({paths.journal.name}) is "
            f"missing: restore it, or rebuild it with `si-ingest ledger repair {results}`, or pass --new-ledger "
            "to start a new one (those rows may then be sent again)"
        )
