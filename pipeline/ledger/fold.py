"""What the ledger knows: a snapshot and journal records folded, one key partition at a time.

The last record of a row_key wins (the snapshot counts as older than any journal record). A
key whose last record is an intent was maybe received by the API and never answered (the
process died): it reads as `unknown` (NO_ANSWER_RECORDED), with the try number its intent
carried. Nothing is materialised whole: `partition(lo, hi)` folds one range of `kp`, so memory
is one partition of each side (`partition.py`) whatever the sizes. The planner reads this
view directly; compaction streams `partitions()` into a new snapshot or journal.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ..keys import partition_hash
from ..models import ErrorCode, Status
from .partition import iter_parts, partition_count, scan_partition
from .reader import RUN_SCHEMA
from .records import STATE_SCHEMA, now_iso
from .snapshot import Snapshot

UNANSWERED = "the request may have reached the API, but the run stopped before its answer was recorded"
VIEW_SCHEMA: dict[str, pl.DataType] = {**STATE_SCHEMA, "legacy": pl.Boolean()}


@dataclass
class Fold:
    """Snapshot + journal runs, folded on demand, partition by partition."""

    snapshot: Snapshot | None
    runs: list[Path]
    journal_records: int
    resolve: bool = True  # read keys left in flight as `unknown`; else keep an `intent` column
    unanswered: int = 0
    _seen: int = field(default=0, repr=False)
    _keys: int = field(default=0, repr=False)
    swept_keys: int | None = None  # row_keys the last full sweep (every partition once) found
    _stamp: str = field(default_factory=now_iso, repr=False)

    @property
    def rows(self) -> int:
        """At most this many keys (a bound for sizing partitions)."""
        return (self.snapshot.rows if self.snapshot else 0) + self.journal_records

    @functools.cached_property
    def legacy_rows(self) -> int:
        """Records with a format 1 key (0.1's ledgers): the planner then also tries 0.1's keys."""
        journal = pl.scan_parquet(self.runs).select(pl.col("legacy").sum()).collect().item() if self.runs else 0
        return (self.snapshot.legacy_rows if self.snapshot else 0) + int(journal or 0)

    @property
    def empty(self) -> bool:
        return self.rows == 0

    def partitions(self) -> Iterator[pl.DataFrame]:
        """Every partition in `kp` order (state, legacy and kp columns, sorted by kp)."""
        self.unanswered = 0
        for lo, hi in iter_parts(partition_count(self.rows)):
            yield self.partition(lo, hi).with_columns(partition_hash()).sort("kp")
        self.verify_sweep()

    def verify_sweep(self) -> None:
        """After reading every partition once: no snapshot row went unseen (damaged statistics).
        The keys it found are `swept_keys` (the seal's count: ledger/seal.py)."""
        seen, self._seen = self._seen, 0
        self.swept_keys, self._keys = self._keys, 0
        if self.snapshot is not None:
            self.snapshot.check_total(seen)

    def partition(self, lo: int, hi: int) -> pl.DataFrame:
        """The folded state of the keys with `kp` in [lo, hi] (VIEW_SCHEMA, plus `intent` unresolved)."""
        state = self._partition(lo, hi)
        self._keys += state.height
        return state

    def _partition(self, lo: int, hi: int) -> pl.DataFrame:
        parts = []
        if self.snapshot is not None:
            base = self.snapshot.partition(lo, hi)
            self._seen += base.height
            parts.append(base.with_columns(q=pl.lit(-1, pl.Int64), intent=pl.lit(False)))
        journal = scan_partition(self.runs, lo, hi, RUN_SCHEMA).drop("kp").collect() if self.runs else None
        if journal is not None and journal.height:
            parts.append(journal)
        columns = [*VIEW_SCHEMA, "q", "intent"]
        if not parts:
            empty = pl.DataFrame(schema=VIEW_SCHEMA)
            return empty if self.resolve else empty.with_columns(intent=pl.lit(False))
        merged = pl.concat([p.select(columns) for p in parts], how="vertical")
        if journal is None or not journal.height:
            return merged.select(*VIEW_SCHEMA) if self.resolve else merged.select(*VIEW_SCHEMA, "intent")
        merged = (
            merged.sort("q")
            .group_by("row_key")
            .agg(
                pl.exclude("row_key").last(),
                answered=pl.col("attempts").filter(~pl.col("intent")).max(),
            )
        )
        dangling = pl.col("intent")
        self.unanswered += int(merged["intent"].sum())
        if not self.resolve:
            return merged.select(*VIEW_SCHEMA, "intent")
        return merged.select(
            "row_key",
            status=pl.when(dangling).then(pl.lit(Status.UNKNOWN.value)).otherwise("status"),
            sir_id=pl.when(dangling).then(None).otherwise("sir_id"),
            error_code=pl.when(dangling).then(pl.lit(ErrorCode.NO_ANSWER_RECORDED.value)).otherwise("error_code"),
            error_message=pl.when(dangling).then(pl.lit(UNANSWERED)).otherwise("error_message"),
            attempts=pl.when(dangling)
            .then(pl.coalesce("attempts", pl.col("answered") + 1, pl.lit(1)))
            .otherwise("attempts"),
            http_status=pl.when(dangling).then(None).otherwise("http_status"),
            updated_at=pl.when(dangling).then(pl.lit(self._stamp)).otherwise("updated_at"),
            legacy="legacy",
        )
