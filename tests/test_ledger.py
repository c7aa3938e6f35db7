"""The ledger package: journal writer, checks, fold, compaction forms, pairing, lock."""

import asyncio
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipeline.errors import ConfigError, LedgerDamaged, LedgerError, LockError
from pipeline.ledger import Ledger, LedgerPaths, RunLock, compact, replay
from pipeline.ledger import store as store_mod
from pipeline.ledger.check import check
from pipeline.ledger.records import check_line, header, intent, outcome
from pipeline.ledger.repair import repair
from pipeline.models import RESULT_COLUMNS, Outcome, Status

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "ledger_v1"


def open_ledger(tmp_path: Path, **kw) -> Ledger:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Ledger.open(tmp_path / "r.csv", work, writable=kw.pop("writable", True), **kw)


def created(key: str, sir_id: int, attempts: int = 1) -> Outcome:
    return Outcome(key, Status.CREATED, sir_id=sir_id, attempts=attempts, http_status=200)


async def test_group_commit_writes_many_intents_at_once(tmp_path: Path):
    ledger = open_ledger(tmp_path)
    journal = ledger.journal(fsync=True)
    before = journal.writes
    await asyncio.gather(*(journal.intent(f"k{i}", 1) for i in range(50)))
    assert journal.writes == before + 1
    journal.outcome(created("k1", 7))
    journal.close()
    state, in_flight, _ = replay(ledger.paths.journal)
    assert len(in_flight) == 49 and "k1" not in in_flight
    assert state.row(0, named=True)["sir_id"] == 7


async def test_rows_left_in_flight_become_unknown_with_their_try_counted(tmp_path: Path):
    ledger = open_ledger(tmp_path)
    journal = ledger.journal(fsync=False)
    journal.outcome(Outcome("a", Status.FAILED, error_code="HTTP_503", attempts=2))
    await journal.intent("a", 3)
    await journal.intent("b", 1)
    journal.close()  # killed: no outcome for either
    view = open_ledger(tmp_path, writable=False).view
    rows = {r["row_key"]: r for r in view.partition(0, 2**64 - 1).iter_rows(named=True)}
    assert rows["a"]["status"] == "unknown" and rows["a"]["attempts"] == 3
    assert rows["b"]["error_code"] == "NO_ANSWER_RECORDED" and rows["b"]["attempts"] == 1


def test_torn_last_line_is_ignored_and_cut(tmp_path: Path):
    paths = LedgerPaths(tmp_path / "r.csv")
    data = header(0, "L", None) + outcome(1, created("a", 5)) + intent(2, "b", 1)
    paths.journal.write_bytes(data + outcome(3, created("b", 6))[:20])
    state, in_flight, valid = replay(paths.journal)
    assert state["row_key"].to_list() == ["a"] and in_flight == ["b"] and valid == len(data)
    ledger = open_ledger(tmp_path)
    ledger.journal(fsync=False).close()
    assert paths.journal.read_bytes() == data


def test_last_record_wins(tmp_path: Path):
    paths = LedgerPaths(tmp_path / "r.csv")
    fail = Outcome("a", Status.FAILED, error_code="HTTP_503", attempts=1)
    lines = [
        header(0, "L", None),
        intent(1, "a", 1),
        outcome(2, fail),
        intent(3, "a", 2),
        outcome(4, created("a", 9, 2)),
    ]
    paths.journal.write_bytes(b"".join(lines))
    state, in_flight, _ = replay(paths.journal)
    assert in_flight == [] and state.row(0, named=True)["status"] == "created"


def damaged_journal(tmp_path: Path, edit) -> LedgerPaths:
    paths = LedgerPaths(tmp_path / "r.csv")
    lines = [header(0, "L", None)] + [outcome(i, created(f"k{i}", i)) for i in range(1, 6)]
    lines = edit(lines)
    paths.journal.write_bytes(b"".join(lines))
    return paths


@pytest.mark.parametrize(
    ("edit", "position", "needle"),
    [
        (lambda ls: [*ls[:2], ls[2][:10] + b"\x00" + ls[2][11:], *ls[3:]], 2, "checksum"),
        (lambda ls: [*ls[:3], ls[3].replace(b'"created"', b'"Created"'), *ls[4:]], 3, "checksum"),
        (lambda ls: [*ls[:3], ls[3].replace(b'"id":3', b'"id":"3"'), *ls[4:]], 3, "checksum"),
        (lambda ls: [*ls[:2], *ls[3:]], 2, "sequence"),  # a record deleted
        (lambda ls: [*ls[:2], b"\n", *ls[2:]], 2, "checksum"),  # a blank line added
        (lambda ls: [ls[0].replace(b'"v":2', b'"v":9'), *ls[1:]], 0, "header"),
    ],
)
def test_damage_before_the_tail_is_refused_with_its_position(tmp_path: Path, edit, position, needle):
    damaged_journal(tmp_path, edit)
    with pytest.raises(LedgerDamaged) as info:
        open_ledger(tmp_path)
    assert info.value.position == position and needle in str(info.value)
    assert "si-ingest ledger check" in str(info.value)


def test_per_line_check_agrees_on_sound_and_damaged_lines():
    line = outcome(4, created("k", 1)).rstrip(b"\n")
    assert check_line(line, 4).record is not None
    assert check_line(line, 5).problem.startswith("out of sequence")
    assert check_line(line.replace(b"created", b"createX"), 4).problem.startswith("checksum")
    assert check_line(line.replace(b"created", b"createX"), 4).row_key == "k"


async def test_journal_deleted_mid_run_stops_sending_and_keeps_its_records(tmp_path: Path):
    ledger = open_ledger(tmp_path)
    journal = ledger.journal(fsync=False)
    await journal.intent("a", 1)
    journal.outcome(created("a", 1))
    os.unlink(ledger.paths.journal)
    with pytest.raises(LedgerError, match="deleted, replaced or moved"):
        await journal.intent("b", 1)
    assert journal.lost
    saved = ledger.finish(journal)
    assert saved is not None and b'"k":"a"' in saved.read_bytes()
    rows = ledger.view.partition(0, 2**64 - 1)
    assert dict(zip(rows["row_key"], rows["status"], strict=True)) == {"a": "created", "b": "unknown"}


async def test_journal_replaced_mid_run_is_noticed(tmp_path: Path):
    ledger = open_ledger(tmp_path)
    journal = ledger.journal(fsync=False)
    shutil.copy(ledger.paths.journal, tmp_path / "copy")
    os.replace(tmp_path / "copy", ledger.paths.journal)
    with pytest.raises(LedgerError):
        await journal.intent("a", 1)


async def test_unwritable_journal_stops_sending(tmp_path: Path):
    ledger = open_ledger(tmp_path)
    journal = ledger.journal(fsync=False)
    os.close(journal._fd)
    journal._fd = os.open(os.devnull, os.O_RDONLY)  # every write now fails (EBADF)
    with pytest.raises(LedgerError):
        await journal.intent("k", 1)
    with pytest.raises(LedgerError):
        await journal.intent("k2", 1)


async def test_small_ledger_compacts_into_one_outcome_per_key(tmp_path: Path):
    ledger = open_ledger(tmp_path)
    journal = ledger.journal(fsync=False)
    for attempt in (1, 2, 3):
        await journal.intent("a", attempt)
        journal.outcome(Outcome("a", Status.FAILED, error_code="HTTP_503", attempts=attempt))
    await journal.intent("a", 4)
    journal.outcome(created("a", 3, 4))
    journal.flush()
    before = replay(ledger.paths.journal)[0]
    ledger.finish(journal)
    after, in_flight, _ = replay(ledger.paths.journal)
    assert after.equals(before) and not in_flight
    assert len(ledger.paths.journal.read_bytes().splitlines()) == 2
    assert not ledger.paths.snapshot.exists()


async def test_large_ledger_moves_into_a_snapshot(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(store_mod, "SNAPSHOT_ROWS", 10)
    ledger = open_ledger(tmp_path)
    journal = ledger.journal(fsync=False)
    for i in range(30):
        journal.outcome(created(f"k{i}", i))
    await journal.intent("x", 1)
    ledger.finish(journal)
    assert ledger.paths.snapshot.exists() and len(ledger.paths.journal.read_bytes().splitlines()) == 1
    state, _, _ = replay(ledger.paths.journal)
    assert state.height == 31 and state.filter(pl.col("row_key") == "x")["status"][0] == "unknown"
    # a journal beside the snapshot, then a fold killed before the journal was reset
    second = open_ledger(tmp_path)
    journal = second.journal(fsync=False)
    for i in range(10):
        journal.outcome(created(f"y{i}", 100 + i))
    journal.close()
    saved = second.paths.journal.read_bytes()
    monkeypatch.setattr(store_mod, "JOURNAL_ROWS", 0)
    second.compact()  # 11 journal lines > a quarter of the snapshot's 31 rows: a new snapshot
    assert len(second.paths.journal.read_bytes().splitlines()) == 1
    second.paths.journal.write_bytes(saved)  # as if killed between the snapshot's rename and the reset
    state, _, _ = replay(second.paths.journal)
    assert state.height == 41
    third = open_ledger(tmp_path)
    assert len(third.paths.journal.read_bytes().splitlines()) == 1  # recognised as folded, reset


def test_missing_or_foreign_halves_are_refused(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(store_mod, "SNAPSHOT_ROWS", 1)
    paths = LedgerPaths(tmp_path / "r.csv")
    paths.journal.write_bytes(header(0, "L", None) + outcome(1, created("a", 1)) + outcome(2, created("b", 2)))
    compact(paths.journal)
    assert paths.snapshot.exists()
    journal = paths.journal.read_bytes()
    paths.journal.unlink()
    with pytest.raises(LedgerDamaged, match="missing"):
        open_ledger(tmp_path)
    paths.journal.write_bytes(header(0, "another", None))
    with pytest.raises(LedgerDamaged, match="another ledger"):
        open_ledger(tmp_path)
    paths.journal.write_bytes(journal)
    paths.snapshot.unlink()
    with pytest.raises(LedgerDamaged, match="missing"):
        open_ledger(tmp_path)


def test_results_with_sent_rows_but_no_ledger_are_refused_unless_new_ledger(tmp_path: Path):
    (tmp_path / "r.csv").write_text("row_key,status\nk1,created\n")
    with pytest.raises(LedgerError, match="missing"):
        open_ledger(tmp_path)
    open_ledger(tmp_path, new_ledger=True)
    with pytest.raises(ConfigError, match="--new-ledger"):
        open_ledger(tmp_path, new_ledger=True)


def test_format_1_fixture_upgrades_and_is_kept(tmp_path: Path):
    for name in ("si-results.csv", "si-results.csv.journal"):
        shutil.copy(FIXTURE_V1 / name, tmp_path / name)
    before, _, _ = replay(tmp_path / "si-results.csv.journal")
    assert before.height == 10 and before["legacy"].all()
    ledger = Ledger.open(tmp_path / "si-results.csv", tmp_path, writable=True)
    assert ledger.upgraded and (tmp_path / "si-results.csv.journal.v1").exists()
    after, _, _ = replay(tmp_path / "si-results.csv.journal")
    assert after.equals(before)


def test_lock_is_exclusive_and_names_the_holder(tmp_path: Path):
    results = tmp_path / "r.csv"
    with RunLock(results):
        with pytest.raises(LockError) as info:
            RunLock(results).acquire()
        assert f"pid {os.getpid()}" in str(info.value)
    RunLock(results).acquire()  # released: free again


def test_stale_lock_file_is_taken_over(tmp_path: Path):
    results = tmp_path / "r.csv"
    (tmp_path / "r.csv.lock").write_text("pid 999999 on gone-host, started 2020-01-01T00:00:00Z")
    lock = RunLock(results)
    lock.acquire()
    assert f"pid {os.getpid()}" in (tmp_path / "r.csv.lock").read_text()
    lock.release()


def write_results(path: Path, rows: dict[str, str]) -> None:
    frame = pl.DataFrame({"row_key": list(rows), "status": list(rows.values())})
    frame = frame.with_columns(source=pl.lit("in.csv"), source_row=pl.int_range(1, len(rows) + 1))
    frame = frame.with_columns(pl.lit(None, pl.String).alias(c) for c in RESULT_COLUMNS if c not in frame.columns)
    frame.select(RESULT_COLUMNS).write_csv(path)


def test_repair_marks_every_row_a_damaged_record_may_concern_unknown(tmp_path: Path):
    paths = LedgerPaths(tmp_path / "r.csv")
    lines = [header(0, "L", None), intent(1, "k1", 1), outcome(2, created("k1", 1)), intent(3, "k2", 1)]
    lines += [outcome(4, created("k2", 2)), outcome(5, Outcome("k3", Status.FAILED, error_code="HTTP_503", attempts=1))]
    lines[2] = lines[2].replace(b'"s":"created"', b'"s":"CREATED"')  # key still readable
    lines[4] = b"\x00garbage\n"  # nothing readable
    paths.journal.write_bytes(b"".join(lines))
    write_results(paths.results, {"k1": "created", "k2": "pending", "k3": "failed", "k4": "pending", "k5": "invalid"})
    work = tmp_path / "w"
    work.mkdir()
    report = check(paths.results, work)
    assert [f.position for f in report.findings] == [2, 4]
    assert report.findings[0].row_key == "k1" and report.rows["k1"] == ["in.csv row 1"]
    assert report.unattributed and "ledger repair" in report.render()
    _, marked, _ = repair(paths.results, work)
    state = {r["row_key"]: r for r in replay(paths.journal)[0].iter_rows(named=True)}
    # k1: its last sound record is an intent; k2: its outcome is lost; k3 failed and k4 pending may be
    # the lost record's row: all unknown. k5 was never sent (invalid) and stays out.
    assert {k: v["status"] for k, v in state.items()} == dict.fromkeys(("k1", "k2", "k3", "k4"), "unknown")
    assert marked == 4 and check(paths.results, work).findings == []


def test_a_damaged_snapshot_is_refused_and_repaired_from_the_results(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(store_mod, "SNAPSHOT_ROWS", 1)
    paths = LedgerPaths(tmp_path / "r.csv")
    outcomes = [created(f"k{i}", i) for i in range(2000)]
    paths.journal.write_bytes(header(0, "L", None) + b"".join(outcome(i + 1, o) for i, o in enumerate(outcomes)))
    compact(paths.journal)
    whole = paths.snapshot.read_bytes()
    before = pl.concat(list(open_ledger(tmp_path).view.partitions())).sort("row_key")
    # 64 bytes flipped at a third of the file, else further on: the file's size varies with its
    # timestamps, and a flip that lands in page statistics leaves every record intact (1 in ~30
    # tries), which must then read back unchanged; damage to records must be refused.
    for start in range(len(whole) // 3, len(whole), 1009):
        data = bytearray(whole)
        for offset in range(start, min(start + 64, len(data))):
            data[offset] ^= 0xFF
        paths.snapshot.write_bytes(bytes(data))
        try:  # the planner reads every partition before any request
            after = pl.concat(list(open_ledger(tmp_path).view.partitions())).sort("row_key")
        except LedgerDamaged as exc:
            assert "r.csv.ledger.parquet" in str(exc)
            break
        assert after.equals(before)
    else:
        pytest.fail("no damage was detected anywhere")
    write_results(paths.results, {f"k{i}": "created" for i in range(2000)})
    work = tmp_path / "w"
    work.mkdir()
    assert check(paths.results, work).findings
    repair(paths.results, work, least=2000)  # the last run's key count: the results file holds them all
    state = replay(paths.journal)[0]
    assert state.height == 2000 and set(state["status"]) == {"created"}
