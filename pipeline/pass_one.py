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
from .ledger.partition import write_ordered, write_run
from .ledger.records import now_iso
from .models import Status
from .plan import IDENTITY, LOCAL, STATE, VERDICT_SCHEMA, Batch, Plan, resolve_verdicts
from .result_rows import Prerendered
from .validate import checks, with_messages
from .workfile import write_work_file

# Key rows gathered before a sorted run is written. Fewer runs make pass 2 cheaper (each
# partition opens every run), but the run is concatenated and sorted on the writer thread
# while the next batches validate: at 500k the 5M validate peaked at 370-390 MB (once 546),
# at 250k 330-335 MB, and plan 10M stays linear (1M 3.0, 3M 2.8, 10M 2.9 us/row).
KEY_RUN_ROWS = 250_000
KEY_RUN_BYTES = 32 << 20  # ...or this much key text (SHA-256 keys: 32 bytes, so 1M rows; 10 KB request_keys: 3k)
REPEAT_GROUP_ROWS = 16_384  # row groups of the repeats' verdicts (OrderedRuns reads them a group at a time)


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
    held = held_bytes = 0
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
                held_bytes += int(key_rows.get_column("row_key").str.len_bytes().sum() or 0)
                # fewer, larger runs: every partition opens each run once; long request_keys
                # (10 KB each) end a run early, before their text fills memory
                if held >= KEY_RUN_ROWS or held_bytes >= KEY_RUN_BYTES:
                    _key_run(plan, writer, keys_held, workdir, legacy)
                    keys_held, held, held_bytes = [], 0, 0
        if keys_held:
            _key_run(plan, writer, keys_held, workdir, legacy)


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


def _key_run(plan: Plan, writer: Writer, frames: list[pl.DataFrame], workdir: Path, legacy: bool) -> None:
    """A key run (sorted by `kp`) written on the writer thread, with the rows whose key came
    earlier in it set apart as repeats (`repeats-*.parquet`, verdicts in input order): pass 2
    reads each partition whole, and a key shared by every row (a request_key filled with a batch
    id, `N/A`) had put every copy into one partition (5M rows: 960 MB; found by a review, h11b).
    Now a key is held once per run. Not with a format 1 ledger, whose alternate keys (`alt`)
    share these runs."""
    index = len(plan.key_runs)
    path = workdir / f"keys-{index:06d}.parquet"
    plan.key_runs.append(path)
    frame = pl.concat(frames)
    if legacy:
        writer.submit(write_work_file, path, write_run, frame, path)
        return
    writer.submit(_write_run_and_repeats, frame, path, workdir / f"repeats-{index:06d}.parquet", plan.repeat_runs)


def _write_run_and_repeats(frame: pl.DataFrame, path: Path, repeats: Path, written: list[Path]) -> None:
    """`frame` (key rows in input order) as a key run of its first rows per key, and its other
    rows as `duplicate` verdicts. Only rows whose 64-bit `kp` repeats are compared in full: for
    an export with no repeats this costs one hash of `kp` per row."""
    shared = frame.select(pl.col("kp").is_duplicated()).to_series()
    again = pl.repeat(False, frame.height, dtype=pl.Boolean, eager=True)  # not a Python list per row
    if shared.any():
        within = frame.filter(shared).select(again=~pl.col("row_key").is_first_distinct()).to_series()
        again = again.scatter(shared.arg_true(), within)
    verdicts = frame.filter(again).select(
        "order", alt=pl.lit(False), dup=pl.lit(True), **{c: pl.lit(None, VERDICT_SCHEMA[c]) for c in STATE}
    )
    if verdicts.height:
        write_work_file(repeats, write_ordered, verdicts, repeats, REPEAT_GROUP_ROWS)
        written.append(repeats)  # read once the writer is done (the `with Writer()` block)
    write_work_file(path, write_run, frame.filter(~again), path)


def _legacy_rows(valid: pl.DataFrame) -> pl.DataFrame:
    """The keys si-ingest 0.1 may have given these rows (see keys.py), as alternate lookups."""
    return keys.legacy_keys(valid).with_columns(keys.partition_hash(), alt=pl.lit(True))


def _write(frame: pl.DataFrame, path: Path) -> None:
    write_work_file(path, frame.write_parquet, path, compression="lz4", row_group_size=65_536)
