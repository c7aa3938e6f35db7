"""Input files + the ledger -> the run's plan, in passes over bounded batches, spilled to disk.

    1. (pass_one.py) load, validate and key every batch (before any request, so an unreadable
       line anywhere stops the run with nothing sent); spill it in input order to
       `<results>.work/`, and its valid keys as a run sorted by `kp`;
    2. per partition of the key space (ledger/partition.py): mark repeats within the run
       (the first in input order is kept) and look the keys up in the ledger, keeping a
       verdict only for rows that are repeats or that the ledger knows (sparse: a first run
       of a new export writes almost nothing here);
    3. count, from the verdicts alone, what is a repeat, settled earlier, or to send.
Sending merges the verdicts back into each spilled batch in input order and builds request
bodies for the rows to send only; the results are rendered the same way from a lookup
against the ledger as the run left it. A dry run with a CSV results file and an empty ledger
writes its results rows in pass 1 instead of spilling (result_rows.py). Memory is a few
batches (pass 1 reads one ahead and writes one behind on threads: background.py) plus one
partition, whatever the input or the ledger hold (bench/ledger_scale.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from . import keys
from .ledger.fold import Fold
from .ledger.partition import (
    OrderedRuns,
    iter_parts,
    ordered_share,
    partition_count,
    scan_partition,
    write_ordered,
)
from .ledger.records import STATE_SCHEMA, now_iso
from .models import API_FIELDS, EXTRA_RESULT_COLUMNS, RESULT_COLUMNS, ErrorCode, Row, Status
from .result_rows import RESULT_SCHEMA, Prerendered
from .workfile import write_work_file

IDENTITY = (*RESULT_COLUMNS[:8], *EXTRA_RESULT_COLUMNS)  # row_key .. sir_planned_dt, source_path
LOCAL = ("status", "error_code", "error_message")
_KEY_SCHEMA: dict[str, pl.DataType] = {
    "order": pl.Int64(),
    "row_key": pl.String(),
    "kp": pl.UInt64(),
    "alt": pl.Boolean(),
}
STATE = tuple(c for c in STATE_SCHEMA if c != "row_key")
VERDICT_SCHEMA: dict[str, pl.DataType] = {
    "order": pl.Int64(),
    "alt": pl.Boolean(),
    "dup": pl.Boolean(),
    **{c: STATE_SCHEMA[c] for c in STATE},
}
DUPLICATE_MESSAGE = "same row_key as an earlier row of this run"


@dataclass(frozen=True, slots=True)
class Batch:
    path: Path | None  # its spill; None where the plan's results were written in pass 1
    last_order: int


@dataclass
class Plan:
    workdir: Path
    chunk_rows: int
    sendable: tuple[str, ...]  # earlier statuses that are sent again
    batches: list[Batch] = field(default_factory=list)
    key_runs: list[Path] = field(default_factory=list)
    repeat_runs: list[Path] = field(default_factory=list)  # verdicts of rows repeating a key within a key run
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    duplicate: int = 0
    settled: int = 0  # created or rejected earlier, or unknown without --resend-unknown
    to_send: int = 0
    orgs: set[str] = field(default_factory=set)  # the (lower-case) org_ids of the valid rows
    _looked_up: tuple[Fold, list[Path]] | None = field(default=None, repr=False)
    again: int = 0  # of to_send, rows an earlier run tried (failed, or unknown with --resend-unknown)
    _counted: tuple[int, int, int] | None = field(default=None, repr=False)  # (repeats, settled, again)
    # a dry run's results, written in pass 1 instead of spills (result_rows.py says why)
    prerendered: Prerendered | None = field(default=None, repr=False)

    @property
    def tried_before(self) -> tuple[str, ...]:
        """Earlier statuses of rows that were tried and are sent again: they go after the rest."""
        return tuple(s for s in self.sendable if s != Status.PENDING.value)

    def rows_to_send(self) -> Iterator[Row]:
        """The rows to send, in input order (bodies built per batch, for those rows only): first
        the rows never tried (new, or `pending`), then those an earlier run tried. A row the API
        keeps refusing with a message it does not document (`failed`, sent again every night)
        must not hold back the rest: sorted first, 50 such rows had tripped the breaker night
        after night and no row behind them was ever sent (the independent-server sweep)."""
        yield from self._rows_to_send(again=False)
        if self.again:
            yield from self._rows_to_send(again=True)

    def _rows_to_send(self, *, again: bool) -> Iterator[Row]:
        assert self._looked_up is not None, "build_plan looks the keys up first"
        merger = OrderedRuns(self._looked_up[1], VERDICT_SCHEMA, self.chunk_rows)
        tried = pl.col("status_j").is_in(self.tried_before)
        for batch in self.batches:
            assert batch.path is not None, "a plan that sends spills its batches"
            spill = pl.read_parquet(batch.path)
            decided = self._decide(spill, resolve_verdicts(merger.upto(batch.last_order)))
            send = decided.filter(pl.col("send") & (tried if again else ~tried.fill_null(False))).select(
                "row_key",
                "source",
                "source_row",
                _body().alias("body"),
                pl.col("attempts_j").fill_null(0),
                pl.col("org_id").str.to_lowercase(),
                pl.col("contact_id").str.to_lowercase(),
            )
            for key, source, source_row, body, attempts, org_id, contact_id in send.iter_rows():
                yield Row(key, source, source_row, body.encode(), attempts, org_id, contact_id)

    def results(self, view: Fold) -> Iterator[pl.DataFrame]:
        """The results file's rows, batch by batch in input order, from `view`'s state.

        The ledger lookup runs now (its errors raise here), unless the plan's own lookup was
        against this very view (nothing was sent); the batches are made as iterated.
        """
        return self._results(self._lookup(view, "final"))

    def _results(self, merger: OrderedRuns) -> Iterator[pl.DataFrame]:
        stamp = now_iso()
        for batch in self.batches:
            assert batch.path is not None, "a plan written in pass 1 is rendered by `prerendered_results`"
            spill = pl.read_parquet(batch.path, columns=["order", *IDENTITY, *LOCAL])
            yield self.rows_of(spill, resolve_verdicts(merger.upto(batch.last_order)), stamp)

    def rows_of(self, spill: pl.DataFrame, verdicts: pl.DataFrame, stamp: str) -> pl.DataFrame:
        """A batch's results rows (RESULT_SCHEMA): the local verdict, else the ledger's, else
        pending, stamped `stamp` where the ledger has no time for the row."""
        decided = self._decide(spill, verdicts)
        local = pl.col("status").is_not_null()
        known = ~local & pl.col("status_j").is_not_null()
        return decided.select(
            *RESULT_COLUMNS[:8],
            status=pl.when(local)
            .then(pl.col("status"))
            .when(known)
            .then(pl.col("status_j"))
            .otherwise(pl.lit(Status.PENDING.value)),
            sir_id=pl.when(known).then(pl.col("sir_id")),
            error_code=pl.when(local).then(pl.col("error_code")).otherwise(pl.col("error_code_j")),
            error_message=pl.when(local).then(pl.col("error_message")).otherwise(pl.col("error_message_j")),
            # a repeat or an invalid row was never tried itself, whatever its key's own tries
            attempts=pl.when(local).then(0).otherwise(pl.col("attempts_j").fill_null(0)),
            http_status=pl.when(known).then(pl.col("http_status")),
            updated_at=pl.when(known).then(pl.col("updated_at")).otherwise(pl.lit(stamp)),
            source_path=pl.col("source_path"),
        ).cast(RESULT_SCHEMA)  # type: ignore[arg-type]  # a dict of dtypes is accepted

    def verdicts_for(self, view: Fold) -> int:
        """How many rows have a verdict (a repeat, or a row `view` knows) in a lookup against `view`."""
        self._lookup(view, "final")
        assert self._looked_up is not None
        return sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in self._looked_up[1])

    def prerendered_results(self, view: Fold) -> Iterator[tuple[int, pl.DataFrame | None]]:
        """A dry run's results against `view`, batch by batch in input order, as (its index in
        `prerendered`, None) where no verdict touches it (its lines are right as written), else
        (index, its rows rendered again from the lines read back, with the verdicts)."""
        assert self.prerendered is not None
        merger = self._lookup(view, "final")
        stamp = now_iso()
        first = 0
        pending = pl.col("status") == Status.PENDING.value
        for index, batch in enumerate(self.batches):
            verdicts = resolve_verdicts(merger.upto(batch.last_order))
            if verdicts.height:
                back = self.prerendered.take(index).select(
                    pl.int_range(first, batch.last_order + 1, dtype=pl.Int64).alias("order"),
                    *IDENTITY,
                    status=pl.when(pending).then(None).otherwise(pl.col("status")),
                    error_code=pl.col("error_code"),
                    error_message=pl.col("error_message"),
                )
                yield index, self.rows_of(back, verdicts, stamp)
            else:
                yield index, None
            first = batch.last_order + 1

    def _decide(self, spill: pl.DataFrame, verdicts: pl.DataFrame) -> pl.DataFrame:
        """A spilled batch with its verdicts: repeats marked `duplicate`, the ledger's state as
        `*_j` columns (attempts_j, status_j...), and `send`."""
        joined = spill.join(
            verdicts.rename({c: f"{c}_j" for c in ("status", "error_code", "error_message", "attempts")}),
            on="order",
            how="left",
            maintain_order="left",
        )
        dup = pl.col("status").is_null() & pl.col("dup").fill_null(False)
        fresh = pl.col("status").is_null() & ~dup
        return joined.with_columns(
            status=pl.when(dup).then(pl.lit(Status.DUPLICATE.value)).otherwise("status"),
            error_code=pl.when(dup).then(pl.lit(ErrorCode.DUPLICATE_KEY.value)).otherwise("error_code"),
            error_message=pl.when(dup).then(pl.lit(DUPLICATE_MESSAGE)).otherwise("error_message"),
            send=fresh & (pl.col("status_j").is_null() | pl.col("status_j").is_in(self.sendable)),
        )

    def _count(self, merger: OrderedRuns) -> None:
        """Pass 3: repeats and rows settled earlier, from the (sparse) verdicts alone."""
        for batch in self.batches:
            dup, settled, again = self._tally(resolve_verdicts(merger.upto(batch.last_order)))
            self.duplicate += dup
            self.settled += settled
            self.again += again
        self.to_send = self.valid - self.duplicate - self.settled

    def _tally(self, verdicts: pl.DataFrame) -> tuple[int, int, int]:
        """(repeats, rows settled earlier, rows tried earlier and sent again) among `verdicts`."""
        dup = pl.col("dup").fill_null(False)
        status = pl.col("status")
        settled = ~dup & status.is_not_null() & ~status.is_in(self.sendable)
        again = ~dup & status.is_in(self.tried_before)
        counted = verdicts.select(dup=dup.sum(), settled=settled.sum(), again=again.sum()).row(0)
        return int(counted[0] or 0), int(counted[1] or 0), int(counted[2] or 0)

    def _lookup(self, view: Fold, tag: str) -> OrderedRuns:
        """Pass 2: repeats and ledger state per key partition, as runs sorted by input order."""
        if self._looked_up is not None and self._looked_up[0] is view:
            return OrderedRuns(self._looked_up[1], VERDICT_SCHEMA, self.chunk_rows)
        parts = partition_count(self.valid, view.rows)
        paths = []
        counts = [0, 0, 0]  # repeats, settled earlier, tried earlier and sent again
        for part, (lo, hi) in enumerate(iter_parts(parts)):
            ledger = view.partition(lo, hi)
            scan = scan_partition(self.key_runs, lo, hi, _KEY_SCHEMA)
            if not ledger.height and not _may_repeat(scan):
                continue  # no verdict here: nothing known, no hash seen twice (the keys' text unread)
            keys_ = scan.collect()
            primary = keys_.filter(~pl.col("alt")).sort("order")
            primary = primary.with_columns(dup=pl.col("order").is_in(_repeats(primary).implode()))
            found = primary.join(_matches(primary, ledger), on="order", how="left")
            verdicts = [found.filter(pl.col("dup") | pl.col("status").is_not_null()).select(*VERDICT_SCHEMA)]
            alternates = keys_.filter(pl.col("alt"))
            if alternates.height and view.legacy_rows:
                matched = _matches(alternates, ledger.filter(pl.col("legacy")))
                verdicts.append(
                    matched.with_columns(dup=pl.lit(None, pl.Boolean), alt=pl.lit(True)).select(*VERDICT_SCHEMA)
                )
            path = self.workdir / f"verdict-{tag}-{part:05d}.parquet"
            _write_verdicts(pl.concat(verdicts), path, ordered_share(self.chunk_rows, parts))
            paths.append(path)
            if not view.legacy_rows:  # every row's verdict is its own: count here, no merge needed
                counts = [c + n for c, n in zip(counts, self._tally(found), strict=True)]
        view.verify_sweep()
        paths += self.repeat_runs  # repeats within a key run, settled in pass 1 (pass_one._key_run)
        repeats = sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in self.repeat_runs)
        counts[0] += repeats
        self._looked_up = (view, paths)
        self._counted = None if view.legacy_rows else (counts[0], counts[1], counts[2])
        return OrderedRuns(paths, VERDICT_SCHEMA, self.chunk_rows)

    def look_up(self, view: Fold) -> None:
        """Passes 2 and 3 (see the module docstring), once pass 1 has read every batch."""
        merger = self._lookup(view, "plan")
        if self._counted is not None:
            self.duplicate, self.settled, self.again = self._counted
            self.to_send = self.valid - self.duplicate - self.settled
        else:  # format 1 records may answer for rows of other partitions: count in input order
            self._count(merger)

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def _may_repeat(keys_: pl.LazyFrame) -> bool:
    """Whether a partition's keys may hold a repeat: some 64-bit `kp` comes twice. Reads `kp`
    alone: for a first run of a new export (no ledger) pass 2 went from 0.75 to 0.31-0.35 s at 5M rows."""
    repeated = keys_.filter(~pl.col("alt")).select(pl.col("kp").is_duplicated().any()).collect().item()
    return bool(repeated)


def _repeats(primary: pl.DataFrame) -> pl.Series:
    """Orders of rows whose key came earlier (primary is in input order). Hashing 64-bit `kp`
    is about 5x cheaper than the key strings; only rows whose kp repeats are compared in full."""
    shared = primary.filter(pl.col("kp").is_duplicated())
    return shared.filter(~pl.col("row_key").is_first_distinct())["order"]


def _matches(keys_: pl.DataFrame, ledger: pl.DataFrame) -> pl.DataFrame:
    """(order, state...) for the keys the ledger knows: joined on `kp`, confirmed on the key itself."""
    hashed = ledger.drop("legacy").with_columns(keys.partition_hash())
    joined = keys_.select("order", "row_key", "kp").join(hashed, on="kp", how="inner", suffix="_ledger")
    return joined.filter(pl.col("row_key") == pl.col("row_key_ledger")).drop("row_key", "row_key_ledger", "kp")


def resolve_verdicts(verdicts: pl.DataFrame) -> pl.DataFrame:
    """One row per input row with a verdict: its own key's state, else a format 1 record's."""
    primary = verdicts.filter(~pl.col("alt")).drop("alt")
    legacy = verdicts.filter(pl.col("alt")).unique("order", keep="first").drop("alt", "dup")
    if not legacy.height:
        return primary
    merged = primary.join(legacy, on="order", how="full", coalesce=True, suffix="_legacy")
    use = pl.col("status").is_null() & pl.col("status_legacy").is_not_null()
    return merged.select(
        "order", "dup", *(pl.when(use).then(pl.col(f"{c}_legacy")).otherwise(pl.col(c)).alias(c) for c in STATE)
    ).sort("order")


def _body() -> pl.Expr:
    """The request's JSON payload without credentials; sir_status only where the row has one.

    org_id and contact_id go out lower-cased, the UUID's canonical form (RFC 9562), as the row
    key reads them: rows that differ only in a UUID's case are one row, so they must be one
    request too (a server comparing case-sensitively had refused an upper-cased contact as
    NOT_FOUND, and the fixed, lower-cased row then had the same key: skipped for good).
    """
    fields = [pl.col(f).str.to_lowercase() if f in ("org_id", "contact_id") else pl.col(f) for f in API_FIELDS]
    with_status = pl.struct(fields).struct.json_encode()
    without = pl.struct(
        [f for f, name in zip(fields, API_FIELDS, strict=True) if name != "sir_status"]
    ).struct.json_encode()
    return pl.when(pl.col("sir_status").is_null()).then(without).otherwise(with_status)


def _write_verdicts(frame: pl.DataFrame, path: Path, share: int) -> None:
    write_work_file(path, write_ordered, frame, path, share)
