"""The ledger's files: journal headers and format 1 journals, the snapshot's metadata, pairing, failures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from pipeline import csv_blocks, loader
from pipeline.errors import LedgerDamaged, LedgerError
from pipeline.ledger import Ledger, LedgerPaths, compact, replay
from pipeline.ledger import lines as lines_mod
from pipeline.ledger import reader as reader_mod
from pipeline.ledger import store as store_mod
from pipeline.ledger.reader import V1_HEADER, inspect
from pipeline.ledger.records import encode, header, outcome
from pipeline.ledger.snapshot import META_KEY, SnapshotMeta, open_snapshot, write_snapshot
from pipeline.ledger.store import rewrite_journal
from pipeline.models import Outcome, Status

ALL = (0, 2**64 - 1)


def created(key: str, sir_id: int, attempts: int = 1) -> Outcome:
    return Outcome(key, Status.CREATED, sir_id=sir_id, attempts=attempts, http_status=200, updated_at="t")


def open_ledger(tmp_path: Path, *, writable: bool = False, **kw: Any) -> Ledger:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Ledger.open(tmp_path / "r.csv", work, writable=writable, **kw)


def statuses(state: pl.DataFrame) -> dict[str, str]:
    return dict(zip(state["row_key"], state["status"], strict=True))


# ---- journal headers -------------------------------------------------------------------------


def test_inspect_reads_the_header_and_the_valid_prefix(tmp_path: Path):
    path = tmp_path / "j"
    assert inspect(path) is None
    body = header(0, "L", "gen-1") + outcome(1, created("a", 1))
    path.write_bytes(body + b'{"q":2,"i":"b"')  # a torn last line
    info = inspect(path)
    assert info is not None and (info.version, info.ledger_id, info.base) == (2, "L", "gen-1")
    assert (info.lines, info.last_seq, info.valid_bytes, info.has_records) == (2, 1, len(body), True)


def test_a_torn_tail_longer_than_a_read_chunk_is_still_cut_at_the_last_newline(tmp_path: Path):
    path = tmp_path / "j"
    body = header(0, "L", None) + outcome(1, created("a", 1))
    path.write_bytes(body + b"x" * (5 << 20))  # more than one 4 MiB chunk without a newline
    info = inspect(path)
    assert info is not None and info.lines == 2 and info.valid_bytes == len(body)


@pytest.mark.parametrize("data", [b"", header(0, "L", None)[:25]], ids=["empty", "torn-header"])
async def test_a_journal_whose_header_never_completed_is_an_empty_ledger(tmp_path: Path, data: bytes):
    paths = LedgerPaths(tmp_path / "r.csv")
    paths.journal.write_bytes(data)
    info = inspect(paths.journal)
    assert info is not None and (info.lines, info.valid_bytes, info.ledger_id) == (0, 0, None)
    ledger = open_ledger(tmp_path, writable=True)
    assert ledger.view.empty
    journal = ledger.journal(fsync=False)  # the open rewrote it with a whole header
    journal.outcome(created("a", 1))
    journal.close()
    assert statuses(replay(paths.journal)[0]) == {"a": "created"}


@pytest.mark.parametrize("data", [b"", header(0, "L", None)[:25]], ids=["empty", "torn-header"])
def test_an_empty_journal_beside_results_that_record_sends_is_refused(tmp_path: Path, data: bytes):
    (tmp_path / "r.csv").write_text("row_key,status\nk1,created\n")
    LedgerPaths(tmp_path / "r.csv").journal.write_bytes(data)
    with pytest.raises(LedgerError):
        open_ledger(tmp_path, writable=True)


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (encode({"q": 0, "ledger": "other", "v": 2, "lid": "L"}), "not an si-ingest journal header"),
        (encode({"q": 0, "ledger": "si-ingest", "v": 3, "lid": "L"}), "format version 3 is not supported"),
        (b'{"journal":"si-ingest","version":2}\n', "checksum mismatch"),
        (encode({"q": 0, "ledger": "si-ingest", "v": 2}), "its header names no ledger"),
        (encode({"q": 0, "ledger": "si-ingest", "v": 2, "lid": "L", "base": 7}), "its header names no ledger"),
    ],
)
def test_a_header_that_is_not_ours_is_refused(tmp_path: Path, first: bytes, reason: str):
    paths = LedgerPaths(tmp_path / "r.csv")
    paths.journal.write_bytes(first + outcome(1, created("a", 1)))
    with pytest.raises(LedgerDamaged) as info:
        open_ledger(tmp_path)
    assert info.value.position == 0 and reason in info.value.reason
    assert info.value.results == paths.results  # names the commands to run next


def test_a_journal_that_cannot_be_read_is_refused(tmp_path: Path):
    LedgerPaths(tmp_path / "r.csv").journal.mkdir()  # reading it fails with EISDIR
    with pytest.raises(LedgerDamaged, match="cannot be read"):
        open_ledger(tmp_path)


def test_damage_in_a_later_batch_is_named_by_its_own_position(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(reader_mod, "BATCH_LINES", 4)
    paths = LedgerPaths(tmp_path / "r.csv")
    lines = [header(0, "L", None)] + [outcome(i, created(f"k{i}", i)) for i in range(1, 15)]
    paths.journal.write_bytes(b"".join(lines))
    assert replay(paths.journal)[0].height == 14  # several batches, all sound
    lines[10] = lines[10].replace(b'"s":"created"', b'"s":"CREATED"')
    paths.journal.write_bytes(b"".join(lines))
    with pytest.raises(LedgerDamaged) as info:
        replay(paths.journal)
    assert info.value.position == 10 and info.value.row_key == "k10" and "checksum" in info.value.reason


def test_a_record_polars_cannot_decode_but_the_per_line_check_accepts_is_still_refused(tmp_path: Path):
    paths = LedgerPaths(tmp_path / "r.csv")
    huge = encode({"q": 2, "k": "x", "s": "created", "n": 2**63})  # beyond Int64
    paths.journal.write_bytes(header(0, "L", None) + outcome(1, created("a", 1)) + huge + outcome(3, created("b", 2)))
    with pytest.raises(LedgerDamaged) as info:
        replay(paths.journal)
    assert info.value.position == 2


# ---- format 1 journals (si-ingest 0.1) -------------------------------------------------------


def v1_journal(tmp_path: Path, *lines: bytes) -> LedgerPaths:
    paths = LedgerPaths(tmp_path / "r.csv")
    paths.journal.write_bytes(V1_HEADER + b"\n" + b"".join(line + b"\n" for line in lines))
    return paths


V1_CREATED = b'{"k":"a","s":"created","n":1,"id":7,"h":200,"t":"2026-01-01T00:00:00Z"}'


def test_a_format_1_journal_is_read_with_its_intents_and_marked_legacy(tmp_path: Path):
    paths = v1_journal(tmp_path, V1_CREATED, b'{"i":"b"}', b'{"i":"a"}', b'{"k":"a","s":"failed","n":2,"c":"HTTP_503"}')
    state, in_flight, _ = replay(paths.journal)
    assert in_flight == ["b"] and state["legacy"].all()
    assert state.row(0, named=True) | {"updated_at": None} == {
        "row_key": "a",
        "status": "failed",
        "sir_id": None,
        "error_code": "HTTP_503",
        "error_message": None,
        "attempts": 2,
        "http_status": None,
        "updated_at": None,
        "legacy": True,
    }
    view = open_ledger(tmp_path).view  # a run reads the intent as `unknown`, first try
    assert view.legacy_rows == 4
    row = {r["row_key"]: r for r in view.partition(*ALL).iter_rows(named=True)}["b"]
    assert (row["status"], row["error_code"], row["attempts"]) == ("unknown", "NO_ANSWER_RECORDED", 1)


@pytest.mark.parametrize(
    ("line", "reason", "key"),
    [
        (b'{"k":"a","s":"created"', "not a JSON record (format 1 journal)", None),
        (b"[1, 2]", "not a format 1 intent or outcome record", None),
        (b'{"i":"b","n":1}', "not a format 1 intent or outcome record", None),  # intents had only "i"
        (b'{"i":3}', "not a format 1 intent or outcome record", None),
        (b'{"k":"a","s":"done","n":1}', "unknown status 'done'", "a"),
        (b'{"k":"a","s":"created","n":-1}', "field 'n' has the wrong type", "a"),
        (b'{"k":"a","s":"created","n":1,"id":true}', "field 'id' has the wrong type", "a"),
        (b'{"k":"a","s":"created","n":1,"h":"200"}', "field 'h' has the wrong type", "a"),
        (b'{"k":"a","s":"created","n":1,"c":5}', "field 'c' has the wrong type", "a"),
        (b'{"k":"a","s":"created","n":1,"t":["x"]}', "field 't' has the wrong type", "a"),
    ],
)
def test_a_damaged_format_1_record_is_refused_with_its_position(tmp_path: Path, line: bytes, reason: str, key):
    paths = v1_journal(tmp_path, V1_CREATED, line, V1_CREATED)
    with pytest.raises(LedgerDamaged) as info:
        replay(paths.journal)
    assert (info.value.position, info.value.reason, info.value.row_key) == (2, reason, key)
    with pytest.raises(LedgerDamaged):  # and a run stops before upgrading it
        open_ledger(tmp_path, writable=True)
    assert not paths.v1_backup.exists()


def test_a_format_1_journal_beside_a_snapshot_is_refused(tmp_path: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    paths.journal.write_bytes(V1_HEADER + b"\n" + V1_CREATED + b"\n")
    with pytest.raises(LedgerDamaged, match="format 1 journal beside a format 2 snapshot"):
        open_ledger(tmp_path)


# ---- the snapshot ----------------------------------------------------------------------------


def snapshot_ledger(tmp_path: Path, monkeypatch, n: int = 20) -> LedgerPaths:
    """A ledger of n created keys held in a snapshot (and an empty journal extending it)."""
    monkeypatch.setattr(store_mod, "SNAPSHOT_ROWS", 1)
    paths = LedgerPaths(tmp_path / "r.csv")
    paths.journal.write_bytes(header(0, "L", None) + b"".join(outcome(i, created(f"k{i}", i)) for i in range(1, n + 1)))
    compact(paths.journal)
    assert paths.snapshot.exists() and len(paths.journal.read_bytes().splitlines()) == 1
    return paths


def rewrite_snapshot(path: Path, frame: pl.DataFrame | None = None, meta: dict[str, Any] | None = None) -> None:
    """Rewrite the snapshot file as a hand would: other rows and/or other metadata."""
    old = pl.read_parquet_metadata(path)[META_KEY]
    frame = pl.read_parquet(path) if frame is None else frame
    text = old if meta is None else orjson.dumps(meta).decode()
    frame.write_parquet(path, metadata={META_KEY: text})


def meta_of(path: Path) -> dict[str, Any]:
    return orjson.loads(pl.read_parquet_metadata(path)[META_KEY])


def test_a_snapshot_ledger_reads_back_whole(tmp_path: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    snap = open_snapshot(paths.snapshot)
    assert snap is not None and snap.rows == 20 and snap.legacy_rows == 0
    assert snap.meta.ledger_id == inspect(paths.journal).ledger_id
    assert inspect(paths.journal).base == snap.meta.generation
    assert statuses(replay(paths.journal)[0]) == {f"k{i}": "created" for i in range(1, 21)}


def test_a_newer_snapshot_format_is_refused_with_a_clear_message(tmp_path: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    rewrite_snapshot(paths.snapshot, meta={**meta_of(paths.snapshot), "v": 3})
    with pytest.raises(LedgerError) as info:
        open_ledger(tmp_path)
    assert not isinstance(info.value, LedgerDamaged)
    assert "version 3 is newer than this release" in str(info.value) and "release that wrote it" in str(info.value)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda meta: None, "no si-ingest ledger metadata"),
        (lambda meta: {k: v for k, v in meta.items() if k != "v"}, "no si-ingest ledger metadata"),
        (lambda meta: {k: v for k, v in meta.items() if k != "lid"}, "its metadata is incomplete"),
        (lambda meta: {**meta, "through": "many"}, "its metadata is incomplete"),
    ],
    ids=["none", "no-version", "no-ledger-id", "bad-through"],
)
def test_snapshot_metadata_that_is_missing_or_incomplete_is_damage(tmp_path: Path, monkeypatch, change, reason):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    meta = change(meta_of(paths.snapshot))
    if meta is None:
        pl.read_parquet(paths.snapshot).write_parquet(paths.snapshot)
    else:
        rewrite_snapshot(paths.snapshot, meta=meta)
    with pytest.raises(LedgerDamaged) as info:
        open_ledger(tmp_path)
    assert info.value.path == paths.snapshot and reason in info.value.reason


def test_a_snapshot_that_is_not_parquet_or_not_ours_is_damage(tmp_path: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    frame = pl.read_parquet(paths.snapshot)
    rewrite_snapshot(paths.snapshot, frame.drop("crc"))
    with pytest.raises(LedgerDamaged, match="columns are not a ledger snapshot's"):
        open_ledger(tmp_path)
    paths.snapshot.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(LedgerDamaged) as info:
        open_ledger(tmp_path)
    assert info.value.path == paths.snapshot and info.value.reason.startswith("unreadable (")


def test_a_snapshot_row_edited_by_hand_fails_its_checksum_when_read(tmp_path: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    frame = pl.read_parquet(paths.snapshot)
    edited = frame.with_columns(status=pl.when(pl.col("row_key") == "k3").then(pl.lit("failed")).otherwise("status"))
    rewrite_snapshot(paths.snapshot, edited)
    ledger = open_ledger(tmp_path)  # opening reads only the metadata and counts
    with pytest.raises(LedgerDamaged) as info:
        list(ledger.view.partitions())
    assert info.value.row_key == "k3" and "fails its checksum" in info.value.reason


def test_a_snapshot_row_hidden_from_every_partition_is_noticed(tmp_path: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    frame = pl.read_parquet(paths.snapshot)
    rewrite_snapshot(
        paths.snapshot, frame.with_columns(kp=pl.when(pl.col("row_key") == "k5").then(None).otherwise("kp"))
    )
    view = open_ledger(tmp_path).view
    with pytest.raises(LedgerDamaged, match="1 of its 20 records cannot be located"):
        list(view.partitions())


def test_a_snapshot_deleted_or_replaced_while_in_use_is_not_read(tmp_path: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    view = open_ledger(tmp_path).view
    data = paths.snapshot.read_bytes()
    paths.snapshot.unlink()
    with pytest.raises(LedgerError, match="deleted or replaced while in use"):
        view.partition(*ALL)
    paths.snapshot.write_bytes(data)  # the same bytes, another file
    with pytest.raises(LedgerError, match="deleted or replaced while in use"):
        view.partition(*ALL)


def test_a_snapshot_damaged_in_place_while_in_use_is_refused(tmp_path: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    view = open_ledger(tmp_path).view
    with open(paths.snapshot, "r+b") as fh:  # same inode: the identity check passes
        fh.write(b"\x00" * 64)
        fh.truncate(200)
    with pytest.raises(LedgerDamaged) as info:
        view.partition(*ALL)
    assert info.value.path == paths.snapshot and info.value.reason.startswith("unreadable")


def test_a_snapshot_that_cannot_be_written_leaves_nothing_behind(tmp_path: Path):
    meta = SnapshotMeta("L", "g", None, 0)
    target = tmp_path / "gone" / "r.csv.ledger.parquet"
    with pytest.raises(LedgerError, match="cannot write ledger snapshot"):
        write_snapshot(target, meta, lambda: iter(()))
    assert not target.parent.exists()


def test_a_journal_that_cannot_be_written_raises_ledger_error(tmp_path: Path):
    with pytest.raises(LedgerError, match="cannot write journal"):
        rewrite_journal(tmp_path / "gone" / "r.csv.journal", "L", None, iter(()))


# ---- pairing and life cycle ------------------------------------------------------------------


def test_a_journal_extending_another_generation_is_refused(tmp_path: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    lid = inspect(paths.journal).ledger_id
    paths.journal.write_bytes(header(0, lid, "some-other-generation") + outcome(1, created("x", 1)))
    with pytest.raises(LedgerDamaged, match="does not continue the snapshot"):
        open_ledger(tmp_path)


def test_a_torn_journal_header_beside_a_snapshot_is_refused(tmp_path: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    paths.journal.write_bytes(paths.journal.read_bytes()[:20])
    with pytest.raises(LedgerDamaged, match="not even its header is whole"):
        open_ledger(tmp_path)


async def test_a_small_run_beside_a_snapshot_compacts_only_the_journal(tmp_path: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    before = os.stat(paths.snapshot)
    ledger = open_ledger(tmp_path, writable=True)
    journal = ledger.journal(fsync=False)
    await journal.intent("k1", 2)
    journal.outcome(Outcome("k1", Status.REJECTED, error_code="NOT_FOUND", attempts=2))
    await journal.intent("new", 1)
    journal.outcome(created("new", 99))
    assert ledger.finish(journal) is None
    after = os.stat(paths.snapshot)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten
    lines = paths.journal.read_bytes().splitlines()
    assert len(lines) == 3  # the header and one outcome per key the run touched
    state = statuses(replay(paths.journal)[0])
    assert state["k1"] == "rejected" and state["new"] == "created" and len(state) == 21


async def test_a_run_that_recorded_nothing_leaves_the_journal_as_it_was(tmp_path: Path):
    paths = LedgerPaths(tmp_path / "r.csv")
    paths.journal.write_bytes(header(0, "L", None))  # nothing to fold: no compaction either
    ledger = open_ledger(tmp_path, writable=True)
    inode = os.stat(paths.journal).st_ino
    journal = ledger.journal(fsync=True)
    assert ledger.finish(journal) is None
    assert os.stat(paths.journal).st_ino == inode  # not rewritten (a compaction renames a new file in)


def test_a_work_folder_that_cannot_be_made_raises_ledger_error(tmp_path: Path):
    from pipeline.ledger import RunLock

    (tmp_path / "r.csv.work").write_text("not a folder")
    with RunLock(tmp_path / "r.csv") as lock, pytest.raises(LedgerError, match="cannot create work folder"):
        lock.make_workdir()


def test_results_without_sent_rows_and_no_ledger_start_a_new_one(tmp_path: Path):
    (tmp_path / "r.csv").write_text("row_key,status\nk1,pending\nk2,invalid\nk3,failed\n")
    assert open_ledger(tmp_path, writable=True).view.empty


def test_parquet_results_with_sent_rows_and_no_ledger_are_refused(tmp_path: Path):
    pl.DataFrame({"row_key": ["k1", "k2"], "status": ["unknown", "pending"]}).write_parquet(tmp_path / "r.parquet")
    (tmp_path / "work").mkdir()
    with pytest.raises(LedgerError, match="records 1 rows sent"):
        Ledger.open(tmp_path / "r.parquet", tmp_path / "work", writable=True)


def test_unreadable_results_and_no_ledger_are_refused(tmp_path: Path):
    (tmp_path / "r.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "work").mkdir()
    with pytest.raises(LedgerError, match="cannot be read as an si-ingest results file"):
        Ledger.open(tmp_path / "r.parquet", tmp_path / "work", writable=True)


class Killed(Exception):
    """Stands for a kill -9 at this instant: what is on disk stays as it is."""


def test_a_kill_while_a_format_1_journal_is_upgraded_into_a_snapshot_loses_nothing(tmp_path: Path, monkeypatch):
    paths = v1_journal(tmp_path, V1_CREATED, b'{"i":"b"}', b'{"k":"b","s":"created","n":1,"id":8}')
    before = replay(paths.journal)[0]
    monkeypatch.setattr(store_mod, "SNAPSHOT_ROWS", 1)  # the upgrade folds into a snapshot

    def killed(*args: Any) -> int:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(store_mod, "rewrite_journal", killed)
        with pytest.raises(Killed):
            open_ledger(tmp_path, writable=True)
    assert paths.snapshot.exists() and paths.journal.read_bytes().startswith(V1_HEADER)
    ledger = open_ledger(tmp_path, writable=True)  # the next run
    after = pl.concat(list(ledger.view.partitions())).sort("row_key")
    assert after.select("row_key", "status", "sir_id").equals(before.select("row_key", "status", "sir_id"))


def test_a_format_1_journal_with_no_records_upgrades_to_an_empty_ledger(tmp_path: Path):
    paths = v1_journal(tmp_path)
    ledger = open_ledger(tmp_path, writable=True)
    assert ledger.upgraded and sum(p.height for p in ledger.view.partitions()) == 0
    assert paths.v1_backup.read_bytes() == V1_HEADER + b"\n"
    info = inspect(paths.journal)
    assert info is not None and info.version == 2 and info.lines == 1


def test_a_journal_is_read_a_block_at_a_time(tmp_path: Path, monkeypatch):
    """Replay decodes the journal a small block of bytes at a time (polars' own scan read 2M
    lines ahead of the decode: 450-610 MB at the end of a 1M-row run), positions carried
    across blocks, blank lines and records longer than a block included."""
    from pipeline.ledger import records as records_mod

    monkeypatch.setattr(lines_mod, "LINE_BLOCK_BYTES", 150)
    monkeypatch.setattr(reader_mod, "BATCH_LINES", 5)
    long = Outcome("k7", Status.FAILED, error_code="API_ERROR", error_message="x" * 400, attempts=1, updated_at="t")
    lines = [header(0, "L", None)] + [outcome(i, long if i == 7 else created(f"k{i}", i)) for i in range(1, 20)]
    paths = LedgerPaths(tmp_path / "r.csv")
    paths.journal.write_bytes(b"".join(lines))
    seen = []
    real = records_mod.decode_lines
    monkeypatch.setattr(records_mod, "decode_lines", lambda batch: seen.append(batch["pos"].to_list()) or real(batch))
    state = replay(paths.journal)[0]
    assert state.height == 19 and statuses(state)["k7"] == "failed" and statuses(state)["k19"] == "created"
    assert [p for batch in seen for p in batch] == list(range(20))  # every line once, in order
    assert max(len(batch) for batch in seen) <= 2 and [7] in seen  # small blocks; the long line whole

    lines[12] = b"\n"  # a blank line in a later block is named by its own position
    paths.journal.write_bytes(b"".join(lines))
    with pytest.raises(LedgerDamaged) as info:
        replay(paths.journal)
    assert info.value.position == 12


def test_a_stretch_without_a_newline_longer_than_any_record_is_damage(tmp_path: Path, monkeypatch):

    monkeypatch.setattr(lines_mod, "LINE_BLOCK_BYTES", 64)
    monkeypatch.setattr(lines_mod, "MAX_LINE_BYTES", 256)
    paths = LedgerPaths(tmp_path / "r.csv")
    body = header(0, "L", None) + outcome(1, created("a", 1))
    paths.journal.write_bytes(body + b"y" * 1000 + b"\n" + outcome(3, created("b", 2)) + outcome(4, created("c", 3)))
    with pytest.raises(LedgerDamaged) as info:
        replay(paths.journal)
    assert info.value.position == 2
    # the overlong line is one line: the records after it keep their positions (a cold review
    # found them cut into pieces, and the last lines never read)
    blocks = list(lines_mod.line_blocks(paths.journal, 5))
    lines = pl.concat([lines_mod.parse_lines(first, block) for first, block in blocks])
    assert lines["pos"].to_list() == [0, 1, 2, 3, 4] and lines["line"][4].startswith('{"q":4,')


def test_a_format_1_journal_longer_than_a_batch_is_read_whole(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(reader_mod, "BATCH_LINES", 3)
    lines = [b'{"k":"k%d","s":"created","n":1,"id":%d}' % (i, i) for i in range(10)]
    lines.append(b'{"k":"k2","s":"rejected","n":2,"c":"NOT_FOUND"}')  # a later batch overrides k2
    paths = v1_journal(tmp_path, *lines)
    state = replay(paths.journal)[0]
    assert state.height == 10 and statuses(state)["k2"] == "rejected" and statuses(state)["k9"] == "created"


def test_csv_results_are_counted_block_by_block(tmp_path: Path, monkeypatch):
    """The start-up check reads an old CSV results file a block at a time (polars' own scan
    holds ~290 MB for a 5M-row file), and still sees a sent row in any block, as stored."""
    monkeypatch.setattr(csv_blocks, "BLOCK_BYTES", 64)
    rows = "".join(f"k{i},pending,'=x\n" for i in range(200))
    (tmp_path / "r.csv").write_text(f"row_key,status,note\n{rows}k200,created,\nk201,pending,\n")
    (tmp_path / "work").mkdir()
    read = []
    monkeypatch.setattr(pl, "scan_csv", lambda *a, **k: read.append(a))  # not the unbounded scan
    with pytest.raises(LedgerError, match="records 1 rows sent"):
        Ledger.open(tmp_path / "r.csv", tmp_path / "work", writable=True)
    assert loader.count_written(tmp_path / "r.csv", "status", ["pending"]) == 201
    assert not read


def test_a_ragged_csv_results_file_and_no_ledger_is_refused(tmp_path: Path):
    (tmp_path / "r.csv").write_text("row_key,status\nk1,pending\nk2,created,extra\n")
    (tmp_path / "work").mkdir()
    with pytest.raises(LedgerError, match="cannot be read as an si-ingest results file"):
        Ledger.open(tmp_path / "r.csv", tmp_path / "work", writable=True)


@pytest.mark.parametrize("suffix", [".journal", ".lock", ".ledger.parquet", ""])
def test_a_ledger_path_that_is_not_a_regular_file_stops_the_run_at_once(tmp_path: Path, suffix: str, write_input):
    """A FIFO where the journal (or lock file, snapshot, results file) belongs: the run had
    waited forever to open it, sending nothing and never exiting (left open by session 7)."""
    from .conftest import make_rows, run_cli

    rows = write_input("a.csv", make_rows(3))
    results = tmp_path / "r.csv"
    os.mkfifo(tmp_path / f"r.csv{suffix}")
    commands = [["validate", str(rows), "--results", str(results)]]
    if suffix == ".journal":  # the one every command opens; the others are checked by the same code
        commands += [
            ["run", str(rows), "--results", str(results), "--base-url", "http://127.0.0.1:9/x"],
            ["ledger", "check", str(results)],
        ]
    for argv in commands:
        done = run_cli(*argv, timeout=15)
        assert done.code == 2 and "is not a regular file" in done.stderr, (argv, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1
