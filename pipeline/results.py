"""The plan + the journal's state -> the results file, written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from .errors import InputError, LedgerError
from .ledger import fsync_dir, now_iso
from .models import RESULT_COLUMNS, Status
from .plan import Plan

RESULT_SCHEMA: dict[str, type[pl.DataType]] = {
    **dict.fromkeys(RESULT_COLUMNS, pl.String),
    "source_row": pl.Int64,
    "sir_id": pl.Int64,
    "attempts": pl.Int64,
    "http_status": pl.Int64,
}


def render(plan: Plan, state: pl.DataFrame, dest: Path) -> None:
    """One row per input row, in input order: the local verdict, else the journal's, else pending."""
    stamp = now_iso()
    joined = plan.frame().join(state.lazy(), on="row_key", how="left", maintain_order="left", suffix="_j")
    local = pl.col("status").is_not_null()
    known = ~local & pl.col("status_j").is_not_null()
    frame = joined.select(
        *RESULT_COLUMNS[:8],
        status=pl.when(local)
        .then(pl.col("status"))
        .when(known)
        .then(pl.col("status_j"))
        .otherwise(pl.lit(Status.PENDING.value)),
        sir_id=pl.when(known).then(pl.col("sir_id")),
        error_code=pl.when(local).then(pl.col("error_code")).otherwise(pl.col("error_code_j")),
        error_message=pl.when(local).then(pl.col("error_message")).otherwise(pl.col("error_message_j")),
        attempts=pl.when(known).then(pl.col("attempts")).otherwise(pl.col("prior_attempts")).fill_null(0),
        http_status=pl.when(known).then(pl.col("http_status")),
        updated_at=pl.when(known).then(pl.col("updated_at")).otherwise(pl.lit(stamp)),
    )
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    for stale in dest.parent.glob(f".{dest.name}.*.tmp"):  # left by a run killed mid-render; we hold the lock
        stale.unlink(missing_ok=True)
    try:
        if dest.name.endswith(".parquet"):
            frame.sink_parquet(tmp)
        else:
            frame.sink_csv(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except (OSError, pl.exceptions.PolarsError) as exc:
        tmp.unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
        raise LedgerError(f"cannot write results file {dest}: {reason}") from exc


def scan(path: Path) -> pl.LazyFrame:
    """A results file, typed, for reports and tests."""
    if not path.exists():
        raise InputError(f"results file {path} does not exist")
    if path.name.endswith(".parquet"):
        return pl.scan_parquet(path)
    return pl.scan_csv(path, schema_overrides=RESULT_SCHEMA, infer_schema=False)


def read(path: Path) -> pl.DataFrame:
    try:
        frame = scan(path).collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"results file {path} cannot be read: {str(exc).splitlines()[0]}") from exc
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path} is not an si-ingest results file (no column {missing[0]})")
    return frame
