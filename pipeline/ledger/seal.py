"""The results file against its ledger: a journal that lost whole records is caught too.

Every record of the journal carries a checksum and a sequence number, so a damaged byte, an
edited status or a lost line in the middle is found when it is read. A journal cut at a line
boundary, cut back to its header, or swapped for an older copy or another ledger's journal
reads as whole: only the results file beside it still shows the rows it lost as sent. So the
run checks, before any request, that every row the results file records as `created` or
`unknown` is `created` or `unknown` in the ledger (never sendable), or for an `unknown` one, was
tried again since (`--resend-unknown`: more attempts); any row the ledger lost stops the run
(LedgerDamaged, exit 2) and `ledger repair` takes it back from the results file.

That check reads the whole results file (3 columns), so it runs only when needed: at the end
of every run that rendered its results, the run writes a seal into its lock file, the identity
(device, inode, size, mtime) of the results file, journal and snapshot as it left them. The
next run reads the seal before it takes the lock over; if every file is as sealed, nothing was
cut, swapped or restored in between, and the check is skipped. A run killed midway leaves no
seal (the lock file is rewritten when a run starts), so the run after it checks.

A `--new-ledger` run marks the lock file with the results file it chose to disregard; until a
run renders new results (and seals them), the runs after it skip the check while that results
file is unchanged, and carry the mark on, so a start-over that stopped early does not lock the
user out.

The seal also holds the ledger's row_key count from the run's last full sweep (`Fold.swept_keys`):
a ledger never loses a key but by damage, so a run that finds fewer (its check sweeps every
partition) stops too, which covers rows of earlier exports that the results file no longer
lists. The count is carried on in the lock file (`floor`, `carried`) from the moment a run or
a `ledger` command takes the lock, so one killed or refused before it seals keeps it; `ledger
check` changes no file and keeps the seal too, and `ledger repair` counts what it mends
against it (repair.py). Ledgers that still hold format 1 (si-ingest 0.1) keys, which the
results file names by the new key, get the count check only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from .. import loader
from ..errors import InputError, LedgerDamaged, LedgerError, reason_of
from ..keys import partition_hash
from ..models import Status
from ..workfile import write_work_file
from .fold import Fold
from .lock import RunLock
from .partition import iter_parts, partition_count, scan_partition, write_run
from .store import SENT_STATUSES, LedgerPaths

SEAL_PREFIX = "seal "
_KEYS: dict[str, pl.DataType] = {
    "row_key": pl.String(),
    "status": pl.String(),
    "attempts": pl.Int64(),
    "kp": pl.UInt64(),
}


def identities(paths: LedgerPaths) -> dict[str, list[int] | None]:
    """(device, inode, size, mtime_ns) of each file, None where it does not exist."""
    out: dict[str, list[int] | None] = {}
    for name, path in (("results", paths.results), ("journal", paths.journal), ("snapshot", paths.snapshot)):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            out[name] = None
            continue
        out[name] = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]
    return out


def seal_line(paths: LedgerPaths, keys: int | None) -> str:
    """The seal of the files as they are now, and the ledger's row_key count, as a lock file line."""
    return SEAL_PREFIX + orjson.dumps({"v": 1, "files": identities(paths), "keys": keys}).decode()


FLOOR_PREFIX = "floor "


def floor(lock_text: str) -> int | None:
    """The fewest row_keys the ledger may hold: the last finished run's count (a ledger never
    loses a key but by damage), from its seal or carried on by the runs after it."""
    for prefix in (SEAL_PREFIX, FLOOR_PREFIX):
        found = _entry(lock_text, prefix)
        keys = found[1].get("keys") if found is not None else None
        if isinstance(keys, int) and not isinstance(keys, bool) and keys >= 0:
            return keys
    return None


def floor_line(keys: int) -> str:
    return FLOOR_PREFIX + orjson.dumps({"v": 1, "keys": keys}).decode()


def holds(lock_text: str, paths: LedgerPaths) -> bool:
    """The lock file's previous content carries a seal, and every file is as it sealed them."""
    found = _entry(lock_text, SEAL_PREFIX)
    return found is not None and found[1].get("files") == identities(paths)


OVER_PREFIX = "over "


def over_line(paths: LedgerPaths) -> str:
    """A `--new-ledger` run's mark: the results file it started over (and chose to disregard)."""
    return OVER_PREFIX + orjson.dumps({"v": 1, "results": identities(paths)["results"]}).decode()


def started_over(lock_text: str, paths: LedgerPaths) -> str | None:
    """The mark of a `--new-ledger` run that stopped before it rendered its results, if the
    results file is still the one it started over; None otherwise."""
    found = _entry(lock_text, OVER_PREFIX)
    return found[0] if found is not None and found[1].get("results") == identities(paths)["results"] else None


def _entry(lock_text: str, prefix: str) -> tuple[str, dict[str, Any]] | None:
    """(the line, its JSON) of the lock file's first line with `prefix`, if it reads as version 1."""
    for line in lock_text.splitlines():
        if line.startswith(prefix):
            try:
                entry = orjson.loads(line[len(prefix) :])
            except orjson.JSONDecodeError:
                return None
            return (line, entry) if isinstance(entry, dict) and entry.get("v") == 1 else None
    return None


def carried(previous: str, *, keep_seal: bool = False) -> list[str]:
    """The lines of the lock file's `previous` content a new holder keeps from the start, so that
    a run (or `ledger` command) stopped before it seals loses none of them: the key-count floor
    (a ledger never loses a key but by damage, whatever happens in between), a start-over's mark
    (it holds only while the results file it names is unchanged), and with `keep_seal` the seal
    itself, for a command that changes no file (`ledger check`)."""
    lines = []
    least = floor(previous)
    if least is not None:
        lines.append(floor_line(least))
    over = _entry(previous, OVER_PREFIX)
    if over is not None:
        lines.append(over[0])
    found = _entry(previous, SEAL_PREFIX)
    if keep_seal and found is not None:
        lines.append(found[0])
    return lines


def before_sending(
    lock: RunLock, paths: LedgerPaths, view: Fold, workdir: Path, *, new_ledger: bool, dry_run: bool = False
) -> None:
    """The run's start, with the lock just taken: mark or carry on what a killed run must not lose
    (a start-over, the key count), and check the files unless they are as the last run sealed them.
    A dry run with `new_ledger` starts no ledger, so it changes nothing that guards a send: the
    key count stays, and the first real run must say `--new-ledger` itself."""
    if new_ledger and dry_run:
        lock.seal(*carried(lock.previous))
        return
    if new_ledger:  # a ledger where there was none: the results file beside it is not this ledger's
        lock.seal(over_line(paths))
        return
    least = floor(lock.previous)
    kept = [floor_line(least)] if least is not None else []
    over = started_over(lock.previous, paths)
    lock.seal(*kept, *([over] if over is not None else []))  # carried on, should this run be killed
    if over is not None:  # a start-over that stopped early: its results file is not this ledger's
        return
    check_results = not (view.empty or view.legacy_rows)  # 0.1's keys are not the results file's
    if (least is not None or check_results) and not holds(lock.previous, paths):
        cross_check(paths, view, workdir, least, results=check_results)


def cross_check(
    paths: LedgerPaths, view: Fold, workdir: Path, least: int | None = None, *, results: bool = True
) -> None:
    """Every row the results file records as sent is in the ledger (unless not `results`: its
    keys are 0.1's), and the ledger holds at least `least` row_keys (`floor`); else LedgerDamaged."""
    runs = _sent_runs(paths.results, workdir) if results and paths.results.exists() else []
    if not runs and least is None:
        return
    rows = sum(pl.scan_parquet(run).select(pl.len()).collect().item() for run in runs)
    unanswered, lost, example = view.unanswered, 0, None
    try:
        for lo, hi in iter_parts(partition_count(rows, view.rows)):
            sent = scan_partition(runs, lo, hi, _KEYS).collect() if runs else pl.DataFrame(schema=_KEYS)
            known = view.partition(lo, hi).select("row_key", ledger=pl.col("status"), tries=pl.col("attempts"))
            joined = sent.join(known, on="row_key", how="left")
            # created or unknown there: created or unknown here (a repair marks a damaged record
            # unknown), or, for an unknown one, tried again since (--resend-unknown: more attempts)
            retried = (pl.col("status") == Status.UNKNOWN.value) & (
                pl.col("tries").fill_null(0) > pl.col("attempts").fill_null(0)
            )
            gone = pl.col("ledger").is_null() | (~pl.col("ledger").is_in(SENT_STATUSES) & ~retried)
            missing = joined.filter(gone)
            if missing.height:
                lost += missing.height
                example = example or missing["row_key"][0]
        view.verify_sweep()
    finally:
        view.unanswered = unanswered  # the planner's own sweep counts them
        for run in runs:
            run.unlink(missing_ok=True)
    held = view.swept_keys or 0
    if least is not None and held < least and not (paths.journal.exists() or paths.snapshot.exists()):
        raise LedgerError(  # nothing to check or repair: the way forward is a backup, or a start-over
            f"the ledger of {paths.results.name} ({paths.journal.name}) is missing, while the last run finished with"
            f" {least} row_keys in it; nothing was sent. Restore it from a backup, or pass --new-ledger to start"
            " a new one (rows the old one recorded may then be sent again)"
        )
    if least is not None and held < least:
        raise LedgerDamaged(
            paths.journal,
            None,
            f"the ledger holds {held} row_keys, {least - held} fewer than when the last run finished ({least}):"
            " records were lost (a journal cut short or restored from a copy) or it was replaced",
        )
    if lost:
        raise LedgerDamaged(
            paths.journal,
            None,
            f"{lost} row(s) the results file {paths.results.name} records as sent are missing from it or"
            f" sendable in it (row_key {example!r} first): records were lost (a journal cut short or restored"
            " from a copy) or it was replaced",
            example,
        )


def results_runs(
    results: Path, workdir: Path, columns: tuple[str, ...], shape: Callable[[pl.DataFrame, int], pl.DataFrame],
    tag: str, refusal: str,
) -> list[Path]:  # fmt: skip
    """`shape(batch, first row index)` of each batch of the results file's `columns`, written as
    kp-sorted runs (bounded memory). An unreadable file raises LedgerError: `refusal`, its reason
    named, the runs written so far removed."""
    runs: list[Path] = []
    first = 0
    try:
        for batch in loader.written_batches(results, columns, loader.WRITTEN_ROWS):
            rows = shape(batch, first)
            first += batch.height
            if rows.height:
                path = workdir / f"{tag}-{len(runs):06d}.parquet"
                write_work_file(path, write_run, rows.with_columns(partition_hash()), path)
                runs.append(path)
    except (OSError, InputError, pl.exceptions.PolarsError) as exc:
        for run in runs:
            run.unlink(missing_ok=True)
        raise LedgerError(f"{results} cannot be read ({reason_of(exc)}); {refusal}") from exc
    return runs


def _sent_runs(results: Path, workdir: Path) -> list[Path]:
    """The results file's created and unknown rows (row_key, status, kp), as kp-sorted runs."""

    def shape(batch: pl.DataFrame, first: int) -> pl.DataFrame:
        rows = batch.filter(pl.col("status").cast(pl.String).is_in(SENT_STATUSES))
        return rows.select(
            pl.col("row_key").cast(pl.String),
            pl.col("status").cast(pl.String),
            pl.col("attempts").cast(pl.Int64, strict=False),
        )

    return results_runs(
        results, workdir, ("row_key", "status", "attempts"), shape, "sealcheck",
        "it or its ledger changed since the last run sealed them, so the ledger cannot be checked against it;"
        " nothing was sent. Restore the results file, or move it aside (the run renders it again from the ledger,"
        " which must then be whole)",
    )  # fmt: skip
