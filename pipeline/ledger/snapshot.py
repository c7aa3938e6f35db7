"""The compacted ledger: one Parquet file, one checksummed row per row_key, sorted by `kp`.

Each row carries `crc`, xxh3-64 over all its other fields, and `kp`, which must equal the
hash of its row_key: a flipped byte, a hand edit or a row moved out of its place is caught
when its partition is read. Every read of the whole snapshot also counts its rows against
the file's own row count, so rows hidden by damaged statistics cannot go unseen.

The file's key-value metadata `si-ingest-ledger` names the format version, the ledger's id
(shared with its journal), this generation's id, the generation it was folded from, and the
last journal record it includes; `store.py` uses them to tell a journal already folded in
(a fold killed before the journal was reset) from one that belongs to another ledger.

Written by streaming partitions through a polars IO source into `sink_parquet`, to a temp
file that is fsynced and renamed over the old one (then the folder fsynced): a kill at any
instant leaves the old snapshot or the new one, both complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from polars.io.plugins import register_io_source

from ..errors import LedgerDamaged, LedgerError, reason_of
from ..keys import xxh3_64
from .partition import in_partition
from .records import FORMAT_VERSION, STATE_SCHEMA, STATUSES

META_KEY = "si-ingest-ledger"
SNAPSHOT_SCHEMA: dict[str, pl.DataType] = {
    **STATE_SCHEMA,
    "legacy": pl.Boolean(),  # a format 1 key (blake2b of the payload as given)
    "kp": pl.UInt64(),
    "crc": pl.UInt64(),
}
ROW_GROUP_ROWS = 65_536
VERIFY_ROWS = 65_536  # rows checksummed at once (the joined text of a million rows is ~250 MB)


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    ledger_id: str
    generation: str
    parent: str | None  # generation folded from (None: the first)
    through: int  # the last journal record (q) of the parent's journal folded in
    upgraded_from_v1: bool = False

    def encode(self) -> str:
        return orjson.dumps(
            {
                "v": FORMAT_VERSION,
                "lid": self.ledger_id,
                "gen": self.generation,
                "parent": self.parent,
                "through": self.through,
                "v1": self.upgraded_from_v1,
            }
        ).decode()


@dataclass(frozen=True, slots=True)
class Snapshot:
    path: Path
    meta: SnapshotMeta
    rows: int
    legacy_rows: int
    identity: tuple[int, int]  # (st_dev, st_ino) when it was opened

    def partition(self, lo: int, hi: int) -> pl.DataFrame:
        """The verified rows with `kp` in [lo, hi]: state columns and `legacy`."""
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != self.identity:
            raise LedgerError(
                f"the ledger snapshot {self.path} was deleted or replaced while in use; nothing more is read"
            )
        try:
            frame = pl.scan_parquet(self.path).filter(in_partition(lo, hi)).collect()
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise LedgerDamaged(self.path, None, f"unreadable ({reason_of(exc)})") from exc
        broken = (
            (pl.col("crc") != row_checksum())
            | (pl.col("kp") != xxh3_64(pl.col("row_key")))
            | ~pl.col("status").is_in(STATUSES)
        ).fill_null(True)
        for offset in range(0, frame.height, VERIFY_ROWS):  # in slices: the checksum text is wide
            bad = frame.slice(offset, VERIFY_ROWS).filter(broken)
            if bad.height:
                key = bad["row_key"][0]
                raise LedgerDamaged(self.path, None, f"the record of row_key {key!r} fails its checksum", key)
        return frame.drop("kp", "crc")

    def check_total(self, seen: int) -> None:
        if seen != self.rows:
            raise LedgerDamaged(self.path, None, f"{self.rows - seen} of its {self.rows} records cannot be located")


def row_checksum() -> pl.Expr:
    fields = [pl.col(c).cast(pl.String).fill_null("\x00") for c in (*STATE_SCHEMA, "legacy", "kp")]
    return xxh3_64(pl.concat_str(fields, separator="\x1f"))


def open_snapshot(path: Path) -> Snapshot | None:
    """Read a snapshot's metadata; None when there is none. Damage raises LedgerDamaged."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    try:
        raw = pl.read_parquet_metadata(path).get(META_KEY)
        info: dict[str, Any] = orjson.loads(raw) if raw else {}
        scan = pl.scan_parquet(path)
        if scan.collect_schema().names() != list(SNAPSHOT_SCHEMA):
            raise LedgerDamaged(path, None, "its columns are not a ledger snapshot's")
        rows = scan.select(pl.len()).collect().item()
        legacy = scan.select(pl.col("legacy").sum()).collect().item() or 0
    except (OSError, pl.exceptions.PolarsError, orjson.JSONDecodeError) as exc:
        raise LedgerDamaged(path, None, f"unreadable ({reason_of(exc)})") from exc
    if info.get("v") != FORMAT_VERSION:
        if "v" not in info:
            raise LedgerDamaged(path, None, "it has no si-ingest ledger metadata")
        raise LedgerError(
            f"{path}: ledger format version {info.get('v')!r} is newer than this release understands; "
            "use the si-ingest release that wrote it"
        )
    try:
        meta = SnapshotMeta(
            ledger_id=str(info["lid"]),
            generation=str(info["gen"]),
            parent=None if info.get("parent") is None else str(info["parent"]),
            through=int(info["through"]),
            upgraded_from_v1=bool(info.get("v1", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LedgerDamaged(path, None, "its metadata is incomplete") from exc
    return Snapshot(path, meta, int(rows), int(legacy), (st.st_dev, st.st_ino))


def write_snapshot(path: Path, meta: SnapshotMeta, partitions: Callable[[], Iterator[pl.DataFrame]]) -> None:
    """Stream `partitions()` (state, legacy and kp columns, sorted by kp throughout) to `path`."""
    tmp = path.with_name(path.name + ".tmp")
    schema = pl.Schema(SNAPSHOT_SCHEMA)

    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        for frame in partitions():
            rows = frame.select(*STATE_SCHEMA, "legacy", "kp").with_columns(crc=row_checksum())
            yield rows.cast(SNAPSHOT_SCHEMA)  # type: ignore[arg-type]  # a dict of dtypes is accepted

    try:
        frame = register_io_source(source, schema=schema)
        frame.sink_parquet(tmp, row_group_size=ROW_GROUP_ROWS, metadata={META_KEY: meta.encode()}, compression="zstd")
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except (OSError, pl.exceptions.PolarsError) as exc:
        tmp.unlink(missing_ok=True)
        reason = reason_of(exc)
        raise LedgerError(f"cannot write ledger snapshot {path}: {reason}") from exc


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    fsync_file(folder)
