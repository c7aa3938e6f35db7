"""The ledger: what every run has learned about every row_key, fail-closed, at any size.

    records.py    the record formats and their checks (checksums, sequence, types)
    journal.py    the write-ahead journal writer: group commit, fsync, "is it still ours"
    lines.py      a journal file -> its lines, a bounded block of bytes at a time
    reader.py     journal -> checked records, as sorted runs (vectorised; format 1 upgrade)
    snapshot.py   the compacted, checksummed, kp-sorted Parquet snapshot
    partition.py  key-space partitions, sorted runs, the merge back into input order
    fold.py       snapshot + journal records -> the next snapshot (last record wins)
    store.py      the files of one results file, whether they belong together, life cycle
    lock.py       one run per results file
    check.py      `si-ingest ledger check`: the damage, record by record
    repair.py     `si-ingest ledger repair`: mend it without resending
    seal.py       the results file against its ledger: records lost whole are caught too

Design decision, and why (measured on this 2-core machine, 2026-11-27; bench/ledger_scale.py):
an append-only journal for the live run plus a compacted snapshot in Parquet, both read by
polars, partitioned by a 64-bit hash of the row_key so that memory is one partition of
each side whatever the sizes. Rejected: SQLite in WAL mode. Its B-tree is bounded in memory
and crash-safe, but every key crosses the Python/C boundary one row at a time, both in and
out (executemany and fetchmany): the per-row cost that made 0.1's replay slow is the part a
10M-row plan cannot afford, and results rendering needs the state back in polars anyway.
Figures: see bench/RESULTS.md.

The write-ahead rule, group commit and fsync policy are unchanged from 0.1 (README).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl

from ..errors import LedgerError
from .journal import Journal
from .lock import RunLock
from .records import STATE_SCHEMA, now_iso
from .store import Ledger, LedgerPaths, locate

__all__ = [
    "STATE_SCHEMA",
    "Journal",
    "Ledger",
    "LedgerPaths",
    "RunLock",
    "compact",
    "journal_path",
    "now_iso",
    "replay",
]


def journal_path(results: Path) -> Path:
    return LedgerPaths(results).journal


def replay(journal: Path) -> tuple[pl.DataFrame, list[str], int]:
    """The whole state a ledger holds, in memory, sorted by row_key: for tests and small tools.

    Returns (state with a `legacy` column, row_keys left in flight, bytes of the journal's
    valid prefix). Runs never call it: they read the ledger one partition at a time.
    """
    paths = LedgerPaths.of_journal(journal)
    with tempfile.TemporaryDirectory() as tmp:
        found = locate(paths, Path(tmp))
        parts = list(found.fold(resolve=False).partitions())
    schema = pl.Schema({**STATE_SCHEMA, "legacy": pl.Boolean(), "intent": pl.Boolean()})
    state = pl.concat([p.select(*schema).cast(schema) for p in parts]) if parts else pl.DataFrame(schema=schema)
    in_flight = state.filter(pl.col("intent"))["row_key"].sort().to_list()
    state = state.filter(~pl.col("intent")).drop("intent").sort("row_key")
    return state, in_flight, found.journal.valid_bytes if found.journal else 0


def compact(journal: Path, state: pl.DataFrame | None = None) -> None:
    """Compact the ledger beside `journal` now (as the end of a run does), for tests and tools.

    `state`, when given, must be what `replay` returns for it: it is checked, not written.
    """
    paths = LedgerPaths.of_journal(journal)
    with tempfile.TemporaryDirectory(dir=paths.results.parent) as tmp:
        ledger = Ledger.open(paths.results, Path(tmp), writable=True, new_ledger=False)
        if ledger.found.runs:
            ledger.compact()
    if state is not None:
        after = replay(journal)[0].select(*STATE_SCHEMA)
        if not after.equals(state.select(*STATE_SCHEMA).sort("row_key")):
            raise LedgerError(f"compacting {journal} changed its state")
