"""Key-space partitions: bounds, sorted runs merged back in input order, and a ledger read in many partitions."""

from __future__ import annotations

import itertools
from pathlib import Path

import polars as pl
import pytest

from pipeline import keys as keys_mod
from pipeline import results as results_mod
from pipeline.config import Config, InputConfig, RunConfig
from pipeline.ledger import LedgerPaths, compact, replay
from pipeline.ledger import partition as part_mod
from pipeline.ledger import store as store_mod
from pipeline.ledger.partition import OrderedRuns, bounds, iter_parts, partition_count
from pipeline.ledger.records import header, intent, outcome
from pipeline.models import Outcome, Status
from pipeline.runner import run
from pipeline.sandbox import DEFAULT_ORG_ID

from .conftest import make_rows

U64 = 2**64


def test_partition_count_is_the_smallest_power_of_two_that_fits(monkeypatch):
    monkeypatch.setattr(part_mod, "PARTITION_ROWS", 10)
    assert [partition_count(n) for n in (0, 1, 10, 11, 20, 21, 40, 41)] == [1, 1, 1, 2, 2, 4, 4, 8]
    assert partition_count(5, 35) == 4 and partition_count() == 1


@pytest.mark.parametrize("parts", [1, 2, 4, 8, 64])
def test_partitions_tile_the_64_bit_key_space(parts: int):
    ranges = list(iter_parts(parts))
    assert len(ranges) == parts and ranges[0][0] == 0 and ranges[-1][1] == U64 - 1
    for (_, hi), (lo, _) in itertools.pairwise(ranges):
        assert lo == hi + 1
    assert len({hi - lo for lo, hi in ranges}) == 1  # equal widths
    assert bounds(parts - 1, parts) == ranges[-1]


def test_ordered_runs_merge_several_files_back_into_input_order(tmp_path: Path):
    schema = {"order": pl.Int64(), "v": pl.String()}
    orders = [[0, 3, 4, 9, 12], [1, 2, 10], [], [5, 6, 7, 8, 11, 13]]
    paths = []
    for i, chunk in enumerate(orders):
        path = tmp_path / f"run{i}.parquet"
        pl.DataFrame({"order": chunk, "v": [f"r{o}" for o in chunk]}, schema=schema).write_parquet(path)
        paths.append(path)
    runs = OrderedRuns(paths, schema, chunk_rows=2)
    got = [runs.upto(last)["order"].to_list() for last in (2, 2, 6, 11, 100, 200)]
    assert got == [[0, 1, 2], [], [3, 4, 5, 6], [7, 8, 9, 10, 11], [12, 13], []]
    assert runs.upto(300).schema == pl.Schema(schema)


def many_keys_journal(paths: LedgerPaths, n: int) -> None:
    lines = [header(0, "L", None)]
    for i in range(n):
        lines.append(intent(len(lines), f"k{i}", 1))
        if i % 5 == 4:
            continue  # left in flight
        status = Status.CREATED if i % 3 else Status.REJECTED
        lines.append(outcome(len(lines), Outcome(f"k{i}", status, sir_id=i, attempts=1, updated_at="t")))
    paths.journal.write_bytes(b"".join(lines))


def test_a_ledger_read_in_many_partitions_is_the_same_ledger(tmp_path: Path, monkeypatch):
    paths = LedgerPaths(tmp_path / "r.csv")
    many_keys_journal(paths, 60)
    whole, in_flight, _ = replay(paths.journal)
    monkeypatch.setattr(part_mod, "PARTITION_ROWS", 7)  # 60+ records: 16 partitions
    split, split_in_flight, _ = replay(paths.journal)
    assert split.equals(whole) and split_in_flight == in_flight and len(in_flight) == 12
    monkeypatch.setattr(store_mod, "SNAPSHOT_ROWS", 10)
    compact(paths.journal)  # into a snapshot written partition by partition
    assert paths.snapshot.exists()
    after, after_in_flight, _ = replay(paths.journal)
    assert after_in_flight == []  # compaction resolves rows left in flight
    assert after.filter(~pl.col("row_key").is_in(in_flight)).equals(whole.filter(~pl.col("row_key").is_in(in_flight)))
    assert set(after.filter(pl.col("row_key").is_in(in_flight))["status"]) == {"unknown"}
    kp = pl.read_parquet(paths.snapshot)["kp"]
    assert kp.is_sorted() and kp.len() == 60


async def validate_run(folder: Path, inputs: list[Path], chunk_rows: int) -> pl.DataFrame:
    config = Config(
        run=RunConfig(results=folder / "r.csv"),
        input=InputConfig(chunk_rows=chunk_rows),
        default_org_id=DEFAULT_ORG_ID,
    )
    result = await run(inputs, config, None)
    frame = results_mod.read(folder / "r.csv")
    assert result.plan.rows == frame.height
    return frame.drop("updated_at")


async def test_a_plan_over_many_partitions_and_batches_matches_the_one_partition_plan(
    tmp_path: Path, write_input, monkeypatch
):
    rows = make_rows(40, seed=3)
    rows["request_key"] = [f"k{i}" for i in range(40)]
    for column in rows:  # row 40 repeats row 3's key; row 41 is invalid
        rows[column] += [rows[column][3], "not-a-uuid" if column == "contact_id" else rows[column][0]]
    rows["request_key"][41] = "k41"
    source = write_input("in.csv", rows)
    frames = []
    for folder, partition_rows in (("one", 10**6), ("many", 4)):
        (tmp_path / folder).mkdir()
        many_keys_journal(LedgerPaths(tmp_path / folder / "r.csv"), 25)
        monkeypatch.setattr(part_mod, "PARTITION_ROWS", partition_rows)
        frames.append(await validate_run(tmp_path / folder, [source], chunk_rows=6))
    one, many = frames
    assert many.equals(one)
    status = one["status"].to_list()
    assert one["source_row"].to_list() == list(range(1, 43))  # input order
    assert (status[1], status[3], status[4], status[30]) == ("created", "rejected", "unknown", "pending")
    assert (status[40], status[41]) == ("duplicate", "invalid")
    assert one.filter(pl.col("row_key") == "k7")["sir_id"].to_list() == [7]


async def test_keys_whose_64_bit_hashes_collide_are_still_told_apart(tmp_path: Path, write_input, monkeypatch):
    """Pass 2 reads a partition's key text only where a `kp` comes twice or the ledger has rows
    there; with every `kp` equal, rows are repeats or known only by their key itself."""
    rows = make_rows(30, seed=5)
    rows["request_key"] = [f"k{i}" if i % 3 == 0 else "" for i in range(30)]
    for column in rows:  # row 30 repeats row 4
        rows[column].append(rows[column][4])
    source = write_input("in.csv", rows)
    frames = []
    for folder, collide in (("apart", False), ("colliding", True)):
        (tmp_path / folder).mkdir()
        many_keys_journal(LedgerPaths(tmp_path / folder / "r.csv"), 25)
        if collide:
            monkeypatch.setattr(keys_mod, "partition_hash", lambda column="row_key": pl.lit(7, pl.UInt64).alias("kp"))
        frames.append(await validate_run(tmp_path / folder, [source], chunk_rows=6))
    apart, colliding = frames
    assert colliding.equals(apart)
    status = apart["status"].to_list()
    assert status.count("duplicate") == 1 and status[30] == "duplicate"
    assert "rejected" in status and status.count("pending") > 10  # k0, k3..: rejected in the ledger
