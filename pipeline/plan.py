"""Input files + the journal's state -> the run's plan, spilled to disk in batches.

The plan is made in a first pass over every input before any request, so an unreadable
line anywhere stops the run with nothing sent, and memory stays bounded by one batch: each
batch is validated, checked for repeats, joined with what earlier runs settled, and written
as an Arrow IPC file into `<results>.work/`. The second pass streams the rows to send from
those files into the submit queue; the results are rendered from them at the end.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from . import loader
from .config import Config
from .errors import LedgerError
from .models import API_FIELDS, RESULT_COLUMNS, SETTLED, Row, Status
from .validate import KeyTracker, validate

# the results file's identity columns, then the local verdict and what the second pass needs
PLAN_COLUMNS: tuple[str, ...] = (
    *RESULT_COLUMNS[:8],
    "status",
    "error_code",
    "error_message",
    "send",
    "body",
    "prior_attempts",
)
_BODY_WITHOUT_STATUS = tuple(f for f in API_FIELDS if f != "sir_status")


@dataclass
class Plan:
    workdir: Path
    files: list[Path] = field(default_factory=list)
    rows: int = 0
    invalid: int = 0
    duplicate: int = 0
    settled: int = 0  # created or rejected earlier, or unknown without --resend-unknown
    to_send: int = 0

    def rows_to_send(self) -> Iterator[Row]:
        for path in self.files:
            part = pl.read_ipc(path, columns=["row_key", "source", "source_row", "body", "prior_attempts", "send"])
            part = part.filter(pl.col("send"))
            for key, source, source_row, body, attempts in part.select(
                "row_key", "source", "source_row", "body", "prior_attempts"
            ).iter_rows():
                yield Row(key, source, source_row, body.encode(), attempts)

    def frame(self) -> pl.LazyFrame:
        if not self.files:
            return pl.LazyFrame(schema=dict.fromkeys(PLAN_COLUMNS, pl.String)).with_columns(
                pl.col("source_row").cast(pl.Int64),
                pl.col("send").cast(pl.Boolean),
                pl.col("prior_attempts").cast(pl.Int64),
            )
        return pl.scan_ipc(self.files)


def make_workdir(results: Path) -> Path:
    workdir = results.with_name(results.name + ".work")
    try:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
    except OSError as exc:
        raise LedgerError(f"cannot create work folder {workdir}: {exc.strerror}") from exc
    return workdir


def build_plan(files: list[loader.InputFile], state: pl.DataFrame, config: Config, workdir: Path) -> Plan:
    """First pass: validate every row and decide which ones to send (see module docstring)."""
    plan = Plan(workdir=workdir)
    skip = {status.value for status in SETTLED}
    if not config.run.resend_unknown:
        skip.add(Status.UNKNOWN.value)
    prior = state.select(
        "row_key",
        pl.col("status").alias("prior_status"),
        pl.col("attempts").fill_null(0).alias("prior_attempts"),
    )
    tracker = KeyTracker()
    for file in files:
        for batch in loader.batches(file, config.input.chunk_rows, config.default_org_id):
            checked = tracker.mark(validate(batch, config.input.sir_statuses))
            checked = checked.join(prior, on="row_key", how="left", maintain_order="left")
            fresh = pl.col("status").is_null()
            send = fresh & ~pl.col("prior_status").is_in(list(skip)).fill_null(False)
            out = checked.with_columns(
                send=send,
                body=pl.when(send).then(_body()),
                prior_attempts=pl.col("prior_attempts").fill_null(0),
            )
            counts = out.select(
                rows=pl.len(),
                invalid=(pl.col("status") == Status.INVALID.value).sum(),
                duplicate=(pl.col("status") == Status.DUPLICATE.value).sum(),
                settled=(fresh & ~pl.col("send")).sum(),
                to_send=pl.col("send").sum(),
            ).row(0, named=True)
            for name, value in counts.items():
                setattr(plan, name, getattr(plan, name) + int(value))
            path = workdir / f"plan-{len(plan.files):06d}.arrow"
            try:
                out.select(PLAN_COLUMNS).write_ipc(path)
            except OSError as exc:
                raise LedgerError(f"cannot write work file {path}: {exc.strerror or exc}") from exc
            plan.files.append(path)
    return plan


def _body() -> pl.Expr:
    """The request's JSON payload without credentials; sir_status only where the row has one."""
    with_status = pl.struct(list(API_FIELDS)).struct.json_encode()
    without = pl.struct(list(_BODY_WITHOUT_STATUS)).struct.json_encode()
    return pl.when(pl.col("sir_status").is_null()).then(without).otherwise(with_status)
