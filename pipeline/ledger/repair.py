"""`si-ingest ledger repair`: mend a damaged ledger without ever resending.

Repair keeps every record that passes its checks (check.py's `Scan`) and never turns a row
that may have been sent into one that will be sent: the rows a damaged record names become
`unknown` (LEDGER_DAMAGED); when some damage names no row (bytes beyond reading, lost records,
a lost file), every row the ledger or the results file knows that is not settled (`pending`,
`failed`) becomes `unknown` too. Rows the results file records but the ledger lost are taken
from the results file; a results file that cannot be read stops the repair with nothing
changed. Records saved by a run that lost its journal (`.journal.recovered-*`) are folded in
after the journal's. The damaged files are kept beside, renamed `.damaged-<time>`. The sound
records and the results file's rows are written as runs batch by batch and folded partition
by partition, as a run's compaction does: memory is a batch and a partition, whatever the
ledger or the results file hold.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import LedgerError
from ..keys import partition_hash
from ..models import ErrorCode, Status
from . import reader, records
from .check import DAMAGED_MESSAGE, Report, Scan, name_rows
from .fold import UNANSWERED
from .partition import iter_parts, partition_count
from .seal import results_runs
from .store import LedgerPaths, write_state


def repair(
    results: Path, workdir: Path, *, least: int | None = None, accept_loss: bool = False
) -> tuple[Report, int, int]:
    """Rewrite the ledger from what passes its checks; returns the report, the rows made unknown
    and the row_keys the ledger now holds.

    Keys no file still shows cannot be marked `unknown`: they are gone, and a row of an older
    export among them would be sent again. So unless `accept_loss`, repair refuses (LedgerError,
    nothing changed) when it would hold fewer keys than `least` (the last finished run's count,
    seal.floor) or than a damaged snapshot's footer counts, or when the snapshot is lost with no
    count at all: its keys are then recovered only from a backup of it.
    """
    report = Report(LedgerPaths(results))
    scan = Scan(report, workdir)
    scan.run(keep=True)
    name_rows(report)
    paths = report.paths
    extra = _results_records(paths.results, workdir)
    sources = [*scan.base_runs, *scan.runs, *scan.damage_runs, *extra]
    stamp = records.now_iso()
    total = sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in sources)
    held, vouched = _keys_held(sources, extra, total)
    if not accept_loss and scan.snapshot_lost is not None and scan.snapshot_rows is not None:
        least = max(least or 0, scan.snapshot_rows)  # its footer still counts its keys: all must be held
    if not accept_loss:
        _refuse_a_loss(paths, vouched, least, scan.snapshot_lost)
    marked = 0
    fail_closed = report.unattributed

    def partitions() -> Any:
        nonlocal marked
        for lo, hi in iter_parts(partition_count(total)):
            parts = [pl.scan_parquet(p).filter(pl.col("kp").is_between(lo, hi)).collect() for p in sources]
            frame = pl.concat(parts) if parts else pl.DataFrame(schema=reader.RUN_SCHEMA)
            state = frame.sort("q").group_by("row_key").agg(pl.exclude("row_key").last())
            dangling = pl.col("intent")
            unsafe = dangling | pl.col("error_code").eq(ErrorCode.LEDGER_DAMAGED.value).fill_null(False)
            if fail_closed:
                unsafe = unsafe | pl.col("status").is_in([Status.PENDING.value, Status.FAILED.value])
            marked += int(state.select(unsafe.sum()).item())
            code = pl.when(dangling).then(pl.lit(ErrorCode.NO_ANSWER_RECORDED.value))
            state = state.with_columns(
                status=pl.when(unsafe).then(pl.lit(Status.UNKNOWN.value)).otherwise("status"),
                error_code=pl.when(unsafe)
                .then(code.otherwise(pl.lit(ErrorCode.LEDGER_DAMAGED.value)))
                .otherwise("error_code"),
                error_message=pl.when(unsafe)
                .then(pl.when(dangling).then(pl.lit(UNANSWERED)).otherwise(pl.lit(DAMAGED_MESSAGE)))
                .otherwise("error_message"),
                attempts=pl.when(dangling).then(pl.col("attempts").fill_null(1)).otherwise("attempts"),
                sir_id=pl.when(unsafe).then(None).otherwise("sir_id"),
                http_status=pl.when(unsafe).then(None).otherwise("http_status"),
                updated_at=pl.when(unsafe).then(pl.lit(stamp)).otherwise("updated_at"),
            )
            yield state.select(*records.STATE_SCHEMA, "legacy").with_columns(partition_hash()).sort("kp")

    suffix = "damaged-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path in (paths.journal, paths.snapshot):
        if path.exists():
            shutil.copy2(path, path.with_name(f"{path.name}.{suffix}"))
    write_state(paths, scan.ledger_id or uuid.uuid4().hex, held, partitions)  # keys, not records, pick its form
    for copy in scan.recovered:
        os.replace(copy, copy.with_name(copy.name + ".merged"))
    return report, marked, held


def _keys_held(sources: list[Path], from_results: list[Path], total: int) -> tuple[int, int]:
    """(distinct row_keys among the records of `sources`, those a ledger once held for sure), a
    partition at a time (bounded memory).

    The second is what is compared with the last run's count: a results file's `pending` row
    may never have been tried, so it may never have been a ledger key, and counting it had let
    a ledger that lost an earlier export's keys pass as whole (a review's repro: 30 rows sent
    again after the repair). Every other row of a results file was tried, so its key was one."""
    held = vouched = 0
    tried = pl.col("status") != Status.PENDING.value
    for lo, hi in iter_parts(partition_count(total) if sources else 0):
        keys = [
            pl.scan_parquet(p)
            .filter(pl.col("kp").is_between(lo, hi))
            .select("row_key", vouches=tried if p in from_results else pl.lit(True))
            for p in sources
        ]
        counts = pl.concat(keys).select(
            held=pl.col("row_key").n_unique(), vouched=pl.col("row_key").filter("vouches").n_unique()
        )
        row = counts.collect().row(0)
        held, vouched = held + row[0], vouched + row[1]
    return held, vouched


def _refuse_a_loss(paths: LedgerPaths, held: int, least: int | None, snapshot_lost: str | None) -> None:
    """LedgerError when the repaired ledger would have lost row_keys (see `repair`)."""
    if least is not None and held >= least:
        return
    if least is not None:
        what = f"it would hold {held} row_keys, {least - held} fewer than when the last run finished ({least})"
        if snapshot_lost is not None:
            what = f"{paths.snapshot.name} is lost ({snapshot_lost}), and " + what
    elif snapshot_lost is not None:
        what = f"{paths.snapshot.name} is lost ({snapshot_lost}): the row_keys only it held are in no other file"
    else:
        return
    raise LedgerError(
        f"repair stopped with nothing changed: {what}. A row of an earlier export among the lost keys would be sent"
        f" again. Put {paths.snapshot.name} and {paths.journal.name} back from a backup and run again; or, if"
        f" what they lost is gone for good, `si-ingest ledger repair {paths.results} --accept-loss` mends what is"
        " left (any lost row that an input still holds is then sent again)"
    )


# The results file's records come before every ledger record: the snapshot's are q = -1 and the
# journal's count from 0, so row n of the results file is q = n - RESULTS_Q (the last row of a
# key wins among them, as the last record of a key does in the journal).
RESULTS_Q = 1 << 62


def _results_records(results: Path, workdir: Path) -> list[Path]:
    """The results file's rows as the oldest records, as runs written batch by batch (bounded
    memory: a 1M-row results file held 920 MB when it was collected whole): used only for keys
    the ledger lost. Invalid and duplicate rows were never sent and are left out. A results file
    that cannot be read stops the repair (LedgerError): without it, a row only it records as sent
    would be in neither file, and the next run would send it again."""
    if not results.exists():
        return []
    sendable = [s.value for s in Status if s not in (Status.INVALID, Status.DUPLICATE)]

    def shape(batch: pl.DataFrame, first: int) -> pl.DataFrame:
        frame = batch.with_columns(q=pl.int_range(first, first + batch.height, dtype=pl.Int64) - RESULTS_Q)
        return frame.filter(pl.col("status").cast(pl.String).is_in(sendable)).select(
            "q",
            intent=pl.lit(False),
            row_key=pl.col("row_key").cast(pl.String),
            status=pl.col("status").cast(pl.String),
            sir_id=pl.col("sir_id").cast(pl.Int64, strict=False),
            error_code=pl.col("error_code").cast(pl.String),
            error_message=pl.col("error_message").cast(pl.String),
            attempts=pl.col("attempts").cast(pl.Int64, strict=False).fill_null(0),
            http_status=pl.col("http_status").cast(pl.Int64, strict=False),
            updated_at=pl.col("updated_at").cast(pl.String),
            legacy=pl.lit(False),
        )

    return results_runs(
        results, workdir, tuple(records.STATE_SCHEMA), shape, "repair-results",
        "repair takes from it the rows the ledger lost, so it stopped with nothing changed: restore the results"
        " file or mend the line named, then repair again",
    )  # fmt: skip
