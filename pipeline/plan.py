"""Input files + the ledger -> the run's plan, in passes over bounded batches, spilled to disk.

    1. load, validate and key every batch (before any request, so an unreadable line anywhere
       stops the run with nothing sent); spill it in input order to `<results>.work/`, and
       its valid keys as a run sorted by `kp`;
    2. per partition of the key space (ledger/partition.py): mark repeats within the run
       (the first in input order is kept), and look the keys up in the ledger;
    3. per batch, in input order: merge those verdicts back and decide which rows to send.
       Only those get a request body; the batch's first spill is then deleted.
After the run the same lookup against the new snapshot renders the results file. Memory is
one batch plus one partition, whatever the input or the ledger hold (bench/ledger_scale.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from . import keys, loader
from .config import Config
from .errors import LedgerError
from .ledger.fold import Fold
from .ledger.partition import OrderedRuns, iter_parts, partition_count, scan_partition, write_run
from .ledger.records import STATE_SCHEMA, now_iso
from .models import API_FIELDS, RESULT_COLUMNS, ErrorCode, Row, Status
from .validate import validate

IDENTITY = RESULT_COLUMNS[:8]  # row_key .. sir_planned_dt
LOCAL = ("status", "error_code", "error_message")
_KEY_SCHEMA: dict[str, pl.DataType] = {
    "order": pl.Int64(),
    "row_key": pl.String(),
    "kp": pl.UInt64(),
    "alt": pl.Boolean(),
}
_STATE = tuple(c for c in STATE_SCHEMA if c != "row_key")
VERDICT_SCHEMA: dict[str, pl.DataType] = {
    "order": pl.Int64(),
    "alt": pl.Boolean(),
    "dup": pl.Boolean(),
    **{c: STATE_SCHEMA[c] for c in _STATE},
}
_BODY_WITHOUT_STATUS = tuple(f for f in API_FIELDS if f != "sir_status")
DUPLICATE_MESSAGE = "same row_key as an earlier row of this run"


@dataclass(frozen=True, slots=True)
class Batch:
    path: Path
    last_order: int


@dataclass
class Plan:
    workdir: Path
    chunk_rows: int
    batches: list[Batch] = field(default_factory=list)
    key_runs: list[Path] = field(default_factory=list)
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    duplicate: int = 0
    settled: int = 0  # created or rejected earlier, or unknown without --resend-unknown
    to_send: int = 0
    _looked_up: tuple[Fold, list[Path]] | None = field(default=None, repr=False)

    def rows_to_send(self) -> Iterator[Row]:
        """The rows to send, in input order, one batch in memory at a time."""
        for batch in self.batches:
            part = pl.read_ipc(batch.path, columns=["row_key", "source", "source_row", "body", "attempts", "send"])
            part = part.filter(pl.col("send"))
            for key, source, source_row, body, attempts in part.select(
                "row_key", "source", "source_row", "body", "attempts"
            ).iter_rows():
                yield Row(key, source, source_row, body.encode(), attempts)

    def results(self, view: Fold) -> Iterator[pl.DataFrame]:
        """The results file's rows, batch by batch in input order, from `view`'s state.

        The ledger lookup runs now (its errors raise here), unless the plan's own lookup was
        against this very view (nothing was sent); the batches are made as iterated.
        """
        return self._results(self._lookup(view, "final"))

    def _results(self, merger: OrderedRuns) -> Iterator[pl.DataFrame]:
        stamp = now_iso()
        for batch in self.batches:
            spill = pl.read_ipc(batch.path, columns=[*IDENTITY, *LOCAL, "attempts", "order"])
            state = _resolve(merger.upto(batch.last_order))
            joined = spill.join(state, on="order", how="left", maintain_order="left", suffix="_j")
            local = pl.col("status").is_not_null()
            known = ~local & pl.col("status_j").is_not_null()
            yield joined.select(
                *IDENTITY,
                status=pl.when(local)
                .then(pl.col("status"))
                .when(known)
                .then(pl.col("status_j"))
                .otherwise(pl.lit(Status.PENDING.value)),
                sir_id=pl.when(known).then(pl.col("sir_id")),
                error_code=pl.when(local).then(pl.col("error_code")).otherwise(pl.col("error_code_j")),
                error_message=pl.when(local).then(pl.col("error_message")).otherwise(pl.col("error_message_j")),
                attempts=pl.when(known).then(pl.col("attempts_j")).otherwise(pl.col("attempts")).fill_null(0),
                http_status=pl.when(known).then(pl.col("http_status")),
                updated_at=pl.when(known).then(pl.col("updated_at")).otherwise(pl.lit(stamp)),
            )

    def _lookup(self, view: Fold, tag: str) -> OrderedRuns:
        """Pass 2: repeats and ledger state per key partition, as runs sorted by input order."""
        if self._looked_up is not None and self._looked_up[0] is view:
            return OrderedRuns(self._looked_up[1], VERDICT_SCHEMA, self.chunk_rows)
        parts = partition_count(self.valid, view.rows)
        paths = []
        for part, (lo, hi) in enumerate(iter_parts(parts)):
            keys_ = scan_partition(self.key_runs, lo, hi, _KEY_SCHEMA).collect()
            primary = keys_.filter(~pl.col("alt")).sort("order")
            primary = primary.with_columns(dup=~pl.col("row_key").is_first_distinct())
            ledger = view.partition(lo, hi)
            found = primary.join(ledger.drop("legacy"), on="row_key", how="left")
            verdicts = [found.select(*VERDICT_SCHEMA)]
            alternates = keys_.filter(pl.col("alt"))
            if alternates.height and view.legacy_rows:
                matched = alternates.join(ledger.filter(pl.col("legacy")).drop("legacy"), on="row_key", how="inner")
                verdicts.append(matched.with_columns(dup=pl.lit(None, pl.Boolean)).select(*VERDICT_SCHEMA))
            path = self.workdir / f"verdict-{tag}-{part:05d}.parquet"
            _write(pl.concat(verdicts).sort("order"), path)
            paths.append(path)
        view.verify_sweep()
        self._looked_up = (view, paths)
        return OrderedRuns(paths, VERDICT_SCHEMA, self.chunk_rows)

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def build_plan(
    files: list[loader.InputFile], view: Fold, config: Config, workdir: Path, *, bodies: bool = True
) -> Plan:
    """Passes 1-3 (see the module docstring): what to send, counted, before any request.

    `bodies` False (a dry run) leaves the request bodies out of the spill.
    """
    plan = Plan(workdir=workdir, chunk_rows=config.input.chunk_rows)
    legacy = view.legacy_rows > 0
    first: list[Batch] = []
    for file in files:
        for batch in loader.batches(file, config.input.chunk_rows, config.default_org_id):
            checked = validate(batch, config.input.sir_statuses).with_columns(keys.row_key())
            checked = checked.with_columns(order=pl.int_range(plan.rows, plan.rows + checked.height, dtype=pl.Int64))
            valid = checked.filter(pl.col("status").is_null())
            plan.rows += checked.height
            plan.valid += valid.height
            plan.invalid += checked.height - valid.height
            index = len(first)
            path = workdir / f"input-{index:06d}.arrow"
            _write_ipc(
                checked.select(
                    "order",
                    *IDENTITY,
                    *LOCAL,
                    pl.when(pl.col("status").is_null()).then(pl.col("sir_context")).alias("sir_context"),
                    pl.when(pl.col("status").is_null()).then(pl.col("sir_status")).alias("sir_status"),
                ),
                path,
            )
            first.append(Batch(path, plan.rows - 1))
            key_rows = valid.select("order", "row_key", keys.partition_hash(), alt=pl.lit(False))
            if legacy:
                key_rows = pl.concat([key_rows, _legacy_rows(valid)])
            run = workdir / f"keys-{index:06d}.parquet"
            write_run(key_rows, run)
            plan.key_runs.append(run)
    plan.batches = list(_decide(plan, first, view, config, bodies))
    return plan


def _legacy_rows(valid: pl.DataFrame) -> pl.DataFrame:
    """The keys si-ingest 0.1 may have given these rows (see keys.py), as alternate lookups."""
    return keys.legacy_keys(valid).with_columns(keys.partition_hash(), alt=pl.lit(True))


def _decide(plan: Plan, first: list[Batch], view: Fold, config: Config, bodies: bool) -> Iterator[Batch]:
    """Pass 3: per batch, in input order, the local verdict and whether to send (with a body)."""
    sendable = [Status.PENDING.value, Status.FAILED.value]
    if config.run.resend_unknown:
        sendable.append(Status.UNKNOWN.value)
    merger = plan._lookup(view, "plan")
    for index, batch in enumerate(first):
        spill = pl.read_ipc(batch.path)
        state = _resolve(merger.upto(batch.last_order))
        joined = spill.join(state, on="order", how="left", maintain_order="left", suffix="_j")
        dup = pl.col("status").is_null() & pl.col("dup").fill_null(False)
        fresh = pl.col("status").is_null() & ~dup
        send = fresh & (pl.col("status_j").is_null() | pl.col("status_j").is_in(sendable))
        decided = joined.with_columns(
            status=pl.when(dup).then(pl.lit(Status.DUPLICATE.value)).otherwise("status"),
            error_code=pl.when(dup).then(pl.lit(ErrorCode.DUPLICATE_KEY.value)).otherwise("error_code"),
            error_message=pl.when(dup).then(pl.lit(DUPLICATE_MESSAGE)).otherwise("error_message"),
            attempts=pl.col("attempts").fill_null(0),
            send=send,
            body=pl.when(send).then(_body()) if bodies else pl.lit(None, pl.String),
        )
        counts = decided.select(
            duplicate=dup.sum(), settled=(fresh & ~pl.col("send")).sum(), to_send=pl.col("send").sum()
        ).row(0, named=True)
        plan.duplicate += int(counts["duplicate"])
        plan.settled += int(counts["settled"])
        plan.to_send += int(counts["to_send"])
        path = plan.workdir / f"plan-{index:06d}.arrow"
        _write_ipc(decided.select("order", *IDENTITY, *LOCAL, "attempts", "send", "body"), path)
        batch.path.unlink(missing_ok=True)
        yield Batch(path, batch.last_order)


def _resolve(verdicts: pl.DataFrame) -> pl.DataFrame:
    """One row per input row: its own key's state, else a format 1 record found for it."""
    primary = verdicts.filter(~pl.col("alt")).drop("alt")
    legacy = verdicts.filter(pl.col("alt")).unique("order", keep="first").drop("alt", "dup")
    if not legacy.height:
        return primary
    merged = primary.join(legacy, on="order", how="left", suffix="_legacy")
    use = pl.col("status").is_null() & pl.col("status_legacy").is_not_null()
    return merged.select(
        "order", "dup", *(pl.when(use).then(pl.col(f"{c}_legacy")).otherwise(pl.col(c)).alias(c) for c in _STATE)
    )


def _body() -> pl.Expr:
    """The request's JSON payload without credentials; sir_status only where the row has one."""
    with_status = pl.struct(list(API_FIELDS)).struct.json_encode()
    without = pl.struct(list(_BODY_WITHOUT_STATUS)).struct.json_encode()
    return pl.when(pl.col("sir_status").is_null()).then(without).otherwise(with_status)


def _write(frame: pl.DataFrame, path: Path) -> None:
    try:
        frame.write_parquet(path, compression="lz4", row_group_size=65_536)
    except OSError as exc:
        raise LedgerError(f"cannot write work file {path}: {exc.strerror or exc}") from exc


def _write_ipc(frame: pl.DataFrame, path: Path) -> None:
    try:
        frame.write_ipc(path, compression="lz4")
    except OSError as exc:
        raise LedgerError(f"cannot write work file {path}: {exc.strerror or exc}") from exc
