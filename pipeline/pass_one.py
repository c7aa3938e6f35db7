"""Pass 1 of the plan (plan.py says what the passes are), and `build_plan`, which runs them all.

Every input batch is loaded, validated and keyed in one collect (before any request, so an
unreadable line anywhere stops the run with nothing sent); its spill (or, for a dry run against
an empty ledger, its results lines: result_rows.py) and its valid keys, gathered into runs sorted
by `kp`, are written on a thread one batch behind while the next is read ahead on another
(background.py). Memory is a few batches whatever the input holds.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from . import keys, loader
from .background import Writer, read_ahead
from .config import Config
from .ledger.fold import Fold
from .ledger.partition import write_run
from .ledger.records import now_iso
from .models import Status
from .plan import IDENTITY, LOCAL, VERDICT_SCHEMA, Batch, Plan, resolve_verdicts
from .result_rows import Prerendered
from .validate import checks, with_messages
from .workfile import write_work_file

# Key rows gathered before a sorted run is written. Fewer runs make pass 2 cheaper (each
# partition opens every run), but the run is concatenated and sorted on the writer thread
# while the next batches validate: at 500k the 5M validate peaked at 370-390 MB (once 546),
# at 250k 330-335 MB, and plan 10M stays linear (1M 3.0, 3M 2.8, 10M 2.9 us/row).
KEY_RUN_ROWS = 250_000


def build_plan(
    files: list[loader.InputFile], view: Fold, config: Config, workdir: Path, *, prerender: bool = False
) -> Plan:
    """Passes 1-3 (see the module docstring): what to send, counted, before any request.

    `prerender` (a dry run with a CSV results file): where the ledger is empty, the results rows
    are written in pass 1 instead of spills (result_rows.py), and the plan cannot send. Against
    a ledger, most rows may have a verdict and be written twice: validate of 10M rows against a
    ledger of the same 10M took 36.6 s that way, against 27.9 s through spills."""
    sendable = [Status.PENDING.value, Status.FAILED.value]
    if config.run.resend_unknown:
        sendable.append(Status.UNKNOWN.value)
    plan = Plan(workdir=workdir, chunk_rows=config.input.chunk_rows, sendable=tuple(sendable))
    try:
        if prerender and not view.rows:
            plan.prerendered = Prerendered(workdir / "results.csv")
            write_work_file(plan.prerendered.path, plan.prerendered.start)
        _pass_one(plan, files, view, config, workdir)
    finally:
        if plan.prerendered is not None:
            plan.prerendered.close()
    plan.look_up(view)
    return plan


def _pass_one(plan: Plan, files: list[loader.InputFile], view: Fold, config: Config, workdir: Path) -> None:
    legacy = view.legacy_rows > 0
    keys_held: list[pl.DataFrame] = []
    held = 0
    stamp, no_verdicts = now_iso(), resolve_verdicts(pl.DataFrame(schema=VERDICT_SCHEMA))  # for rows written now
    with Writer() as writer:  # spills and key runs written while the next batch validates
        for file in files:
            for batch in read_ahead(loader.batches(file, config.input.chunk_rows, config.default_org_id)):
                checked = _checked(batch, config, plan.rows)
                valid_only = pl.col("status").is_null()
                path: Path | None = None
                if plan.prerendered is not None:  # its rows as written unless pass 2 finds a verdict
                    rows = checked.select("order", *IDENTITY, *LOCAL)
                    writer.submit(_prerender, plan, rows, no_verdicts, stamp)
                else:
                    path = workdir / f"input-{len(plan.batches):06d}.parquet"
                    spill = checked.select(
                        "order",
                        *IDENTITY,
                        *LOCAL,
                        pl.when(valid_only).then(pl.col("sir_context")).alias("sir_context"),
                        pl.when(valid_only).then(pl.col("sir_status")).alias("sir_status"),
                    )
                    writer.submit(_write, spill, path)
                valid = checked.filter(valid_only)
                plan.orgs.update(valid["org_id"].str.to_lowercase().unique().to_list())
                plan.rows += checked.height
                plan.valid += valid.height
                plan.invalid += checked.height - valid.height
                plan.batches.append(Batch(path, plan.rows - 1))
                key_rows = valid.select("order", "row_key", "kp", alt=pl.lit(False))
                if legacy:
                    key_rows = pl.concat([key_rows, _legacy_rows(valid)])
                keys_held.append(key_rows)
                held += key_rows.height
                if held >= KEY_RUN_ROWS:  # fewer, larger runs: every partition opens each run once
                    plan.key_runs.append(_key_run(writer, keys_held, workdir, len(plan.key_runs)))
                    keys_held, held = [], 0
        if keys_held:
            plan.key_runs.append(_key_run(writer, keys_held, workdir, len(plan.key_runs)))


def _prerender(plan: Plan, rows: pl.DataFrame, verdicts: pl.DataFrame, stamp: str) -> None:
    assert plan.prerendered is not None
    write_work_file(plan.prerendered.path, plan.prerendered.add, plan.rows_of(rows, verdicts, stamp))


def _checked(batch: pl.DataFrame, config: Config, first: int) -> pl.DataFrame:
    """A batch validated and keyed (row_key, kp) in one collect, its rows numbered from `first`."""
    checked = (
        checks(
            batch.lazy(),
            config.input.sir_statuses,
            normalize_case=config.input.normalize_case,
            datetime_formats=config.input.datetime_formats,
        )
        .with_columns(keys.row_key(), order=pl.int_range(first, first + batch.height, dtype=pl.Int64))
        .with_columns(keys.partition_hash())
        .collect()
    )
    return with_messages(checked, config.input.sir_statuses)


def _key_run(writer: Writer, frames: list[pl.DataFrame], workdir: Path, index: int) -> Path:
    path = workdir / f"keys-{index:06d}.parquet"
    writer.submit(write_work_file, path, write_run, pl.concat(frames), path)
    return path


def _legacy_rows(valid: pl.DataFrame) -> pl.DataFrame:
    """The keys si-ingest 0.1 may have given these rows (see keys.py), as alternate lookups."""
    return keys.legacy_keys(valid).with_columns(keys.partition_hash(), alt=pl.lit(True))


def _write(frame: pl.DataFrame, path: Path) -> None:
    write_work_file(path, frame.write_parquet, path, compression="lz4", row_group_size=65_536)
