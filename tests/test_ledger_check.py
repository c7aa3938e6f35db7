"""`ledger check` and `ledger repair` on each kind of damage: what is reported, what is kept, what becomes unknown."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipeline import loader
from pipeline import results as results_mod
from pipeline.errors import LedgerError
from pipeline.ledger import Ledger, LedgerPaths, compact, replay
from pipeline.ledger import reader as reader_mod
from pipeline.ledger import store as store_mod
from pipeline.ledger.check import MAX_LISTED, Finding, Report, check
from pipeline.ledger.reader import V1_HEADER
from pipeline.ledger.records import encode, header, intent, outcome
from pipeline.ledger.repair import repair
from pipeline.ledger.snapshot import META_KEY
from pipeline.models import RESULT_COLUMNS, Outcome, Status


def created(key: str, sir_id: int, attempts: int = 1) -> Outcome:
    return Outcome(key, Status.CREATED, sir_id=sir_id, attempts=attempts, http_status=200, updated_at="t")


def write_results(path: Path, rows: dict[str, str], **columns: object) -> None:
    frame = pl.DataFrame({"row_key": list(rows), "status": list(rows.values())})
    frame = frame.with_columns(source=pl.lit("in.csv"), source_row=pl.int_range(1, len(rows) + 1))
    frame = frame.with_columns(pl.lit(v).alias(c) for c, v in columns.items())
    frame = frame.with_columns(pl.lit(None, pl.String).alias(c) for c in RESULT_COLUMNS if c not in frame.columns)
    if path.name.endswith(".parquet"):
        frame.select(RESULT_COLUMNS).write_parquet(path)
    else:
        frame.select(RESULT_COLUMNS).write_csv(path)


def state_of(paths: LedgerPaths) -> dict[str, dict]:
    return {r["row_key"]: r for r in replay(paths.journal)[0].iter_rows(named=True)}


def statuses(paths: LedgerPaths) -> dict[str, str]:
    return {k: v["status"] for k, v in state_of(paths).items()}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def six_created(tmp_path: Path) -> tuple[LedgerPaths, list[bytes]]:
    paths = LedgerPaths(tmp_path / "r.csv")
    return paths, [header(0, "L", None)] + [outcome(i, created(f"k{i}", i)) for i in range(1, 7)]


def test_a_sound_ledger_has_no_findings(tmp_path: Path, work: Path):
    paths, lines = six_created(tmp_path)
    paths.journal.write_bytes(b"".join(lines))
    report = check(paths.results, work)
    assert report.findings == [] and not report.unattributed
    assert report.render() == f"ledger of {paths.results}: no damage found"


def test_a_lost_record_is_one_finding_and_the_records_after_it_are_kept(tmp_path: Path, work: Path):
    paths, lines = six_created(tmp_path)
    del lines[3]  # k3's outcome
    paths.journal.write_bytes(b"".join(lines))
    write_results(paths.results, {"k3": "created", "k7": "pending", "k8": "failed", "k9": "invalid"})
    report = check(paths.results, work)
    assert [(f.position, f.problem, f.row_key) for f in report.findings] == [
        (3, "1 record(s) before it are missing (numbers 3 to 3)", None)
    ]
    assert report.unattributed and "marks every row not yet settled as `unknown`" in report.render()
    _, marked, _ = repair(paths.results, work)
    # the sound records are kept, k3 comes back from the results file, and since the lost record
    # could have concerned any row, the unsettled ones (k7 pending, k8 failed) become unknown
    assert statuses(paths) == {
        "k1": "created",
        "k2": "created",
        "k3": "created",
        "k4": "created",
        "k5": "created",
        "k6": "created",
        "k7": "unknown",
        "k8": "unknown",
    }
    assert marked == 2 and state_of(paths)["k7"]["error_code"] == "LEDGER_DAMAGED"
    assert check(paths.results, work).findings == []
    assert len(list(tmp_path.glob("r.csv.journal.damaged-*"))) == 1


@pytest.mark.parametrize(
    "edit",
    [
        lambda ls: [*ls[:2], b"\n", *ls[2:]],  # a blank line added
        lambda ls: [*ls[:2], ls[2][:20] + b"\n" + ls[2][21:], *ls[3:]],  # one byte of k2's line became a newline
        lambda ls: [*ls[:3], ls[2], *ls[3:]],  # k2's line written twice
    ],
    ids=["blank-line", "split-line", "repeated-line"],
)
def test_an_added_line_does_not_condemn_the_records_after_it(tmp_path: Path, work: Path, edit):
    paths, lines = six_created(tmp_path)
    paths.journal.write_bytes(b"".join(edit(lines)))
    report = check(paths.results, work)
    assert all(f.position is not None and f.position <= 3 for f in report.findings), report.render()
    repair(paths.results, work)
    state = statuses(paths)
    assert all(state[f"k{i}"] == "created" for i in range(3, 7)), state


def test_a_record_numbered_with_something_else_than_an_integer_is_damage(tmp_path: Path, work: Path):
    paths, lines = six_created(tmp_path)
    lines[2] = encode({"q": "2", "k": "k2", "s": "created", "n": 1})
    paths.journal.write_bytes(b"".join(lines))
    report = check(paths.results, work)
    assert [(f.position, f.row_key) for f in report.findings] == [(2, "k2")]
    assert report.findings[0].problem.startswith("out of sequence (record number '2'")
    repair(paths.results, work)
    assert state_of(paths)["k2"]["status"] == "unknown" and state_of(paths)["k3"]["status"] == "created"


def test_a_damaged_header_is_reported_and_the_records_after_it_are_kept(tmp_path: Path, work: Path):
    paths, lines = six_created(tmp_path)
    lines[0] = lines[0].replace(b"si-ingest", b"si-ingesT")
    paths.journal.write_bytes(b"".join(lines))
    report = check(paths.results, work)
    assert {f.position for f in report.findings} == {0}
    assert "not an si-ingest journal header" in report.findings[0].problem
    repair(paths.results, work)
    assert statuses(paths) == {f"k{i}": "created" for i in range(1, 7)}


def test_findings_name_the_input_rows_of_their_row_key(tmp_path: Path, work: Path):
    paths, lines = six_created(tmp_path)
    lines[2] = lines[2].replace(b'"s":"created"', b'"s":"CREATED"')
    lines[4] = lines[4].replace(b'"s":"created"', b'"s":"CREATED"')
    paths.journal.write_bytes(b"".join(lines))
    write_results(paths.results, {"k2": "created", "k9": "pending"})
    report = check(paths.results, work)
    text = report.render()
    assert "record 3: checksum mismatch" in text and "row_key k2: in.csv row 1" in text
    assert "row_key k4: not in the results file" in text
    assert not report.unattributed and "marks every row" not in text
    assert text.endswith(f"next: si-ingest ledger repair {paths.results}")


def test_a_long_report_lists_the_first_findings_and_counts_the_rest(tmp_path: Path, work: Path):
    paths = LedgerPaths(tmp_path / "r.csv")
    lines = [header(0, "L", None)] + [b"garbage %d\n" % i for i in range(MAX_LISTED + 5)]
    paths.journal.write_bytes(b"".join(lines))
    text = check(paths.results, work).render()
    assert f"{MAX_LISTED + 5} damaged record(s)" in text
    assert f"record {MAX_LISTED + 1}:" in text and f"record {MAX_LISTED + 2}:" not in text
    assert text.count("checksum mismatch") == MAX_LISTED and "... and 5 more" in text


@pytest.mark.parametrize("field", ["n", "h"])
def test_check_and_repair_handle_a_number_beyond_int64(tmp_path: Path, work: Path, field: str):
    paths, lines = six_created(tmp_path)
    lines[2] = encode({"q": 2, "k": "k2", "s": "created", "n": 1, field: 2**63})
    paths.journal.write_bytes(b"".join(lines))
    assert [f.position for f in check(paths.results, work).findings] == [2]
    repair(paths.results, work)
    assert statuses(paths)["k2"] == "unknown"


# ---- format 1 journals -----------------------------------------------------------------------

V1_LINES = [
    b'{"k":"a","s":"created","n":1,"id":7,"h":200,"t":"x"}',
    b'{"i":"b"}',
    b'{"k":"b","s":"created","n":1,"id":8,"h":200,"t":"x"}',
    b'{"i":"c"}',
]


def test_a_sound_format_1_journal_has_no_findings(tmp_path: Path, work: Path):
    paths = LedgerPaths(tmp_path / "r.csv")
    paths.journal.write_bytes(V1_HEADER + b"\n" + b"".join(line + b"\n" for line in V1_LINES))
    assert check(paths.results, work).findings == []


def test_a_long_format_1_journal_is_repaired_in_blocks_not_line_by_line_frames(tmp_path: Path, work: Path, monkeypatch):
    """A frame per format 1 line, each summed over again: 20k lines took 14.8 s, 1M would take
    hours (a cold review). Lines are read in blocks like format 2's."""
    from pipeline.ledger import records as records_mod

    paths = LedgerPaths(tmp_path / "r.csv")
    lines = [b'{"k":"k%d","s":"created","n":1,"id":%d}' % (i, i) for i in range(3000)]
    paths.journal.write_bytes(V1_HEADER + b"\n" + b"".join(line + b"\n" for line in lines))
    frames = []
    real = records_mod.record_frame
    monkeypatch.setattr(records_mod, "record_frame", lambda rows: frames.append(len(rows)) or real(rows))
    assert check(paths.results, work).findings == []
    repair(paths.results, work)
    assert len(frames) <= 10 and statuses(paths)["k2999"] == "created" and len(statuses(paths)) == 3000


def test_repair_of_a_damaged_format_1_journal_upgrades_it_and_keeps_the_sound_records(tmp_path: Path, work: Path):
    paths = LedgerPaths(tmp_path / "r.csv")
    damaged = b'{"k":"b","s":"created","n":1,"id":8,"h":"200","t":"x"}'  # h of the wrong type
    body = [V1_LINES[0], V1_LINES[1], damaged, V1_LINES[3], b'{"k":"d","s":"rejected","n":1,"c":"NOT_FOUND"}']
    paths.journal.write_bytes(V1_HEADER + b"\n" + b"".join(line + b"\n" for line in body))
    report = check(paths.results, work)
    assert [(f.position, f.row_key) for f in report.findings] == [(3, "b")]
    assert "field 'h' has the wrong type" in report.findings[0].problem
    _, marked, _ = repair(paths.results, work)
    assert paths.journal.read_bytes().startswith(b'{"q":0,"ledger":"si-ingest","v":2')
    state = state_of(paths)
    assert {k: v["status"] for k, v in state.items()} == {
        "a": "created",
        "b": "unknown",
        "c": "unknown",
        "d": "rejected",
    }
    assert state["b"]["error_code"] == "LEDGER_DAMAGED" and state["c"]["error_code"] == "NO_ANSWER_RECORDED"
    assert state["a"]["legacy"] and state["d"]["legacy"]  # still found by 0.1's keys
    assert marked == 2


# ---- records saved by a run that lost its journal --------------------------------------------


async def test_repair_folds_in_the_records_a_run_saved_when_its_journal_was_deleted(tmp_path: Path, work: Path):
    (tmp_path / "w").mkdir()
    ledger = Ledger.open(tmp_path / "r.csv", tmp_path / "w", writable=True)
    journal = ledger.journal(fsync=False)
    await journal.intent("a", 1)
    journal.outcome(created("a", 1))
    os.unlink(ledger.paths.journal)
    with pytest.raises(LedgerError):
        await journal.intent("b", 1)
    saved = ledger.finish(journal)
    assert saved is not None and saved.name.startswith("r.csv.journal.recovered-")
    _only_the_saved_records(check(ledger.paths.results, work), saved.name)
    _, marked, _ = repair(ledger.paths.results, work)
    state = state_of(ledger.paths)
    assert state["a"]["status"] == "created" and state["a"]["sir_id"] == 1
    assert (state["b"]["status"], state["b"]["error_code"]) == ("unknown", "NO_ANSWER_RECORDED")
    assert marked == 1
    assert not saved.exists() and saved.with_name(saved.name + ".merged").exists()
    # merged once: a later repair does not read it again (it would bring back old records)
    later = Ledger.open(ledger.paths.results, tmp_path / "w", writable=True)
    journal = later.journal(fsync=False)
    await journal.intent("b", 2)
    journal.outcome(created("b", 2, attempts=2))
    later.finish(journal)
    repair(ledger.paths.results, work)
    assert state_of(ledger.paths)["b"]["status"] == "created"


def test_a_recovered_copy_is_read_after_the_journal_and_checked_too(tmp_path: Path, work: Path):
    paths, lines = six_created(tmp_path)
    paths.journal.write_bytes(b"".join(lines))
    copy = paths.results.with_name("r.csv.journal.recovered-20260101T000000Z")
    failed = Outcome("k1", Status.FAILED, error_code="HTTP_503", attempts=2)
    tampered = outcome(3, created("k9", 9)).replace(b'"n":1', b'"n":2')
    later = [header(0, "L", None), intent(1, "k1", 2), outcome(2, failed), tampered, outcome(4, created("k7", 7))]
    copy.write_bytes(b"".join(later))
    report = check(paths.results, work)
    assert [(f.file.name, f.position, f.row_key) for f in report.findings] == [(copy.name, 3, "k9")]
    repair(paths.results, work)
    state = statuses(paths)
    assert state["k1"] == "failed"  # the copy's records come after the journal's
    assert state["k7"] == "created" and state["k2"] == "created" and state["k9"] == "unknown"


def test_a_sound_recovered_copy_outranks_the_journal_whatever_its_line_numbers(tmp_path: Path, work: Path):
    paths = LedgerPaths(tmp_path / "r.csv")
    failed = Outcome("k1", Status.FAILED, error_code="HTTP_503", attempts=1)
    journal = [header(0, "L", None)] + [outcome(i, created(f"k{i + 1}", i)) for i in range(1, 5)]
    paths.journal.write_bytes(b"".join([*journal, intent(5, "k1", 1), outcome(6, failed)]))
    copy = paths.results.with_name("r.csv.journal.recovered-20260101T000000Z")
    copy.write_bytes(header(0, "L", None) + intent(1, "k1", 2) + outcome(2, created("k1", 9, attempts=2)))
    _only_the_saved_records(check(paths.results, work), copy.name)
    repair(paths.results, work)
    assert statuses(paths)["k1"] == "created"  # line 2 of the copy comes after line 6 of the journal


def _only_the_saved_records(report, name: str) -> None:  # type: ignore[no-untyped-def]
    """Saved records not yet folded in are the one finding: every run stops until repair, which
    folds them in and makes no unsettled row `unknown` (the advice had said it would: h9a)."""
    findings = report.findings
    assert "marks every row not yet settled" not in report.render()
    assert [f.problem for f in findings] == [
        f"{name} beside r.csv holds the records of a run that lost its journal; nothing was sent."
        f" `si-ingest ledger repair {findings[0].file}` folds them into the ledger"
    ]


# ---- the snapshot ----------------------------------------------------------------------------


def snapshot_ledger(tmp_path: Path, monkeypatch, n: int = 20) -> LedgerPaths:
    monkeypatch.setattr(store_mod, "SNAPSHOT_ROWS", 1)
    paths = LedgerPaths(tmp_path / "r.csv")
    paths.journal.write_bytes(header(0, "L", None) + b"".join(outcome(i, created(f"k{i}", i)) for i in range(1, n + 1)))
    compact(paths.journal)
    assert paths.snapshot.exists()
    return paths


def edit_snapshot(path: Path, edit) -> None:
    meta = pl.read_parquet_metadata(path)[META_KEY]
    edit(pl.read_parquet(path)).write_parquet(path, metadata={META_KEY: meta})


def test_a_snapshot_row_that_fails_its_checksum_becomes_unknown(tmp_path: Path, work: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    position = pl.read_parquet(paths.snapshot)["row_key"].to_list().index("k4")
    edit_snapshot(
        paths.snapshot,
        lambda f: f.with_columns(sir_id=pl.when(pl.col("row_key") == "k4").then(999).otherwise("sir_id")),
    )
    write_results(paths.results, {"k4": "created", "k30": "pending"})
    report = check(paths.results, work)
    assert [(f.file, f.position, f.row_key) for f in report.findings] == [(paths.snapshot, position, "k4")]
    assert report.findings[0].problem == "fails its checksum" and not report.unattributed
    _, marked, _ = repair(paths.results, work)
    state = state_of(paths)
    assert (state["k4"]["status"], state["k4"]["sir_id"], state["k4"]["error_code"]) == (
        "unknown",
        None,
        "LEDGER_DAMAGED",
    )
    assert state["k5"]["status"] == "created" and state["k30"]["status"] == "pending"
    assert marked == 1 and len(state) == 21
    assert check(paths.results, work).findings == []


def test_a_snapshot_row_moved_off_its_key_names_no_row(tmp_path: Path, work: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    edit_snapshot(
        paths.snapshot,
        lambda f: f.with_columns(row_key=pl.when(pl.col("row_key") == "k4").then(pl.lit("k4x")).otherwise("row_key")),
    )
    write_results(paths.results, {"k30": "pending", "k31": "failed"})
    report = check(paths.results, work)
    assert [f.row_key for f in report.findings] == [None] and report.unattributed
    repair(paths.results, work)
    state = statuses(paths)
    assert "k4x" not in state and "k4" not in state  # the row's record is gone: nothing to keep
    assert state["k30"] == "unknown" and state["k31"] == "unknown" and state["k5"] == "created"


def test_an_unreadable_snapshot_is_rebuilt_from_the_results_file(tmp_path: Path, work: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    paths.snapshot.write_bytes(b"this is not parquet")
    write_results(paths.results, {"k1": "created", "k2": "unknown", "k3": "pending"})
    report = check(paths.results, work)
    assert [(f.file, f.position) for f in report.findings] == [(paths.snapshot, None)]
    assert report.findings[0].problem.startswith("unreadable (") and "whole file" in report.render()
    # nothing counts the keys it held: repair refuses, nothing changed, unless the loss is accepted
    with pytest.raises(LedgerError, match=r"r.csv.ledger.parquet is lost \(unreadable .*--accept-loss"):
        repair(paths.results, work)
    assert paths.snapshot.read_bytes() == b"this is not parquet"
    assert not list(tmp_path.glob("r.csv.ledger.parquet.damaged-*"))
    repair(paths.results, work, accept_loss=True)
    assert statuses(paths) == {"k1": "created", "k2": "unknown", "k3": "unknown"}
    assert len(list(tmp_path.glob("r.csv.ledger.parquet.damaged-*"))) == 1


def test_a_snapshot_whose_rows_cannot_be_decoded_is_one_finding(tmp_path: Path, work: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch, n=3000)
    data = bytearray(paths.snapshot.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8  # keep the footer (schema, metadata, counts) whole
    for offset in range(4, len(data) - footer):
        data[offset] = 0xFF
    paths.snapshot.write_bytes(bytes(data))
    report = check(paths.results, work)
    assert [(f.file, f.position) for f in report.findings] == [(paths.snapshot, None)]
    assert report.findings[0].problem.startswith("unreadable")


def test_a_snapshot_of_a_newer_release_stops_check_with_its_message(tmp_path: Path, work: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    meta = pl.read_parquet_metadata(paths.snapshot)[META_KEY].replace('"v":2', '"v":3')
    pl.read_parquet(paths.snapshot).write_parquet(paths.snapshot, metadata={META_KEY: meta})
    with pytest.raises(LedgerError, match="newer than this release"):
        check(paths.results, work)


# ---- the results file as a source --------------------------------------------------------------


def test_repair_without_a_results_file_keeps_what_the_ledger_holds(tmp_path: Path, work: Path):
    paths, lines = six_created(tmp_path)
    lines[3] = b"\x00\n"
    paths.journal.write_bytes(b"".join(lines))
    _, marked, _ = repair(paths.results, work)
    assert statuses(paths) == {f"k{i}": "created" for i in (1, 2, 4, 5, 6)} and marked == 0


def test_an_unreadable_results_file_stops_repair_with_nothing_changed(tmp_path: Path, work: Path):
    """check still lists the damage (no rows named); repair needs the results file for the rows
    the ledger lost, so it stops instead of leaving them out (the next run would send them)."""
    paths = LedgerPaths(tmp_path / "r.parquet")
    lines = [header(0, "L", None), outcome(1, created("k1", 1)), outcome(2, created("k2", 2))]
    lines[1] = lines[1].replace(b'"s":"created"', b'"s":"CREATED"')
    paths.journal.write_bytes(b"".join(lines))
    paths.results.write_bytes(b"not parquet")
    report = check(paths.results, work)
    assert report.findings[0].row_key == "k1" and report.rows == {}
    before = paths.journal.read_bytes()
    with pytest.raises(LedgerError, match=r"r\.parquet cannot be read .*stopped with nothing changed"):
        repair(paths.results, work)
    assert paths.journal.read_bytes() == before and not list(tmp_path.glob("*.damaged-*"))


def test_a_lost_snapshot_and_a_ragged_results_file_lose_no_row_to_repair(tmp_path: Path, work: Path, monkeypatch):
    """The snapshot held 50 created rows and is unreadable; the results file records them, one
    line ragged: repair refuses (it had left the results file out and kept only the journal's row,
    so the next run would have sent the 50 again)."""
    monkeypatch.setattr(store_mod, "SNAPSHOT_ROWS", 1)
    paths = LedgerPaths(tmp_path / "r.csv")
    paths.journal.write_bytes(header(0, "L", None) + b"".join(outcome(i + 1, created(f"k{i}", i)) for i in range(50)))
    compact(paths.journal)
    journal = paths.journal.read_bytes()
    paths.journal.write_bytes(journal + outcome(journal.count(b"\n"), created("k99", 99)))
    paths.snapshot.write_bytes(b"PAR1" + b"\0" * 100 + b"PAR1")
    write_results(paths.results, {f"k{i}": "created" for i in range(50)} | {"k99": "created"})
    text = paths.results.read_text().splitlines()
    text[30] += ",extra"
    paths.results.write_text("\n".join(text) + "\n")
    with pytest.raises(LedgerError, match="cannot be read"):
        repair(paths.results, work)
    text[30] = text[30].removesuffix(",extra")  # mended, as the message says
    paths.results.write_text("\n".join(text) + "\n")
    with pytest.raises(LedgerError, match="is lost"):  # nothing counts the keys the snapshot held
        repair(paths.results, work)
    repair(paths.results, work, least=51)  # the last run counted 51: the results file holds them all
    assert statuses(paths) == {f"k{i}": "created" for i in range(50)} | {"k99": "created"}


def test_repair_reads_parquet_results_for_the_keys_the_ledger_lost(tmp_path: Path, work: Path):
    paths = LedgerPaths(tmp_path / "r.parquet")
    paths.journal.write_bytes(header(0, "L", None) + b"garbage\n" + outcome(2, created("k2", 2)))
    write_results(paths.results, {"k1": "created", "k2": "pending", "k3": "duplicate"}, sir_id=5, attempts=1)
    repair(paths.results, work)
    state = state_of(paths)
    assert (state["k1"]["status"], state["k1"]["sir_id"]) == ("created", 5)
    assert state["k2"]["status"] == "created" and state["k2"]["sir_id"] == 2  # the ledger's record wins
    assert "k3" not in state  # duplicates were never sent


def test_repair_in_many_batches_keeps_the_last_record_of_each_key(tmp_path: Path, work: Path, monkeypatch):
    monkeypatch.setattr(reader_mod, "BATCH_LINES", 3)
    paths = LedgerPaths(tmp_path / "r.csv")
    lines = [header(0, "L", None)]
    for attempt in range(1, 5):
        lines.append(intent(len(lines), "a", attempt))
        lines.append(outcome(len(lines), Outcome("a", Status.FAILED, error_code="HTTP_503", attempts=attempt)))
        lines.append(outcome(len(lines), created(f"k{attempt}", attempt)))
    lines.append(outcome(len(lines), created("a", 42, attempts=5)))
    paths.journal.write_bytes(b"".join(lines))
    before = replay(paths.journal)[0]
    report, marked, _ = repair(paths.results, work)
    assert report.findings == [] and marked == 0
    assert replay(paths.journal)[0].equals(before)
    assert state_of(paths)["a"]["sir_id"] == 42


def test_a_torn_last_line_is_not_damage_and_repair_drops_it(tmp_path: Path, work: Path):
    paths, lines = six_created(tmp_path)
    paths.journal.write_bytes(b"".join(lines) + lines[1][:30])
    assert check(paths.results, work).findings == []
    repair(paths.results, work)
    assert paths.journal.read_bytes().endswith(b"\n")
    assert statuses(paths) == {f"k{i}": "created" for i in range(1, 7)}


def gap_then_damage(tmp_path: Path) -> LedgerPaths:
    paths, lines = six_created(tmp_path)
    del lines[3]  # record 3 (k3) lost, and record 4 (k4) damaged: a status no release writes
    lines[3] = encode({"q": 4, "k": "k4", "s": "Created", "n": 1})
    paths.journal.write_bytes(b"".join(lines))
    return paths


def test_a_record_after_a_gap_that_is_itself_damaged_is_both_findings(tmp_path: Path, work: Path):
    paths = gap_then_damage(tmp_path)
    report = check(paths.results, work)
    assert [(f.position, f.row_key) for f in report.findings][:2] == [(3, None), (3, "k4")]
    assert "numbers 3 to 3" in report.findings[0].problem
    assert report.findings[1].problem == "unknown status 'Created'"
    repair(paths.results, work)
    assert statuses(paths) == {"k1": "created", "k2": "created", "k4": "unknown", "k5": "created", "k6": "created"}


def test_a_record_after_a_gap_that_is_itself_damaged_is_not_followed_by_a_made_up_gap(tmp_path: Path, work: Path):
    paths = gap_then_damage(tmp_path)
    assert [(f.position, f.row_key) for f in check(paths.results, work).findings] == [(3, None), (3, "k4")]


def test_a_snapshot_row_hidden_from_every_partition_is_a_finding(tmp_path: Path, work: Path, monkeypatch):
    paths = snapshot_ledger(tmp_path, monkeypatch)
    edit_snapshot(
        paths.snapshot, lambda f: f.with_columns(kp=pl.when(pl.col("row_key") == "k4").then(None).otherwise("kp"))
    )
    report = check(paths.results, work)
    assert [(f.file, f.position, f.problem) for f in report.findings] == [
        (paths.snapshot, None, "1 records cannot be located")
    ]
    assert report.unattributed


def test_a_journal_damaged_over_many_lines_is_counted_and_repaired_in_batches(tmp_path: Path, work: Path, monkeypatch):
    """Every line's bytes damaged: each is a finding (counted, the first MAX_LISTED kept), and
    repair, writing the rows they name in batches, makes every one of them unknown."""
    monkeypatch.setattr(reader_mod, "BATCH_LINES", 100)
    n = 3 * MAX_LISTED
    paths = LedgerPaths(tmp_path / "r.csv")
    lines = [outcome(i, created(f"k{i}", i)) for i in range(1, n + 1)]
    damaged = [line.replace(b'"s":"created"', b'"s":"CREATED"') for line in lines[:-1]] + [lines[-1]]
    paths.journal.write_bytes(header(0, "L", None) + b"".join(damaged))
    report = check(paths.results, work)
    assert report.count == n - 1 and len(report.findings) == MAX_LISTED and not report.unattributed
    assert f"{n - 1} damaged record(s)" in report.render() and f"... and {n - 1 - MAX_LISTED} more" in report.render()
    report, marked, _ = repair(paths.results, work)
    assert marked == n - 1 and report.count == n - 1
    assert statuses(paths) == {f"k{i}": "unknown" for i in range(1, n)} | {f"k{n}": "created"}


def test_a_file_level_finding_seen_twice_is_one(tmp_path: Path):
    report = Report(LedgerPaths(tmp_path / "r.csv"))
    whole = Finding(tmp_path / "r.csv.journal", None, "its header names no ledger")
    for finding in (whole, whole, Finding(whole.file, 3, "checksum mismatch", "k3")):
        report.add(finding)
    assert report.findings == [whole, Finding(whole.file, 3, "checksum mismatch", "k3")] and report.count == 2
    assert report.unattributed


@pytest.mark.parametrize("name", ["r.csv", "r.parquet"])
def test_repair_reads_the_results_file_in_batches_and_its_last_row_of_a_key_wins(
    tmp_path: Path, work: Path, monkeypatch, name: str
):
    """The results file is read a batch at a time (it had been collected whole: 920 MB for 1M
    rows), its rows ordered before every ledger record and among themselves by position."""
    monkeypatch.setattr(reader_mod, "BATCH_LINES", 2)
    monkeypatch.setattr(loader, "WRITTEN_ROWS", 2)  # the results file too (it had stopped reaching it)
    paths = LedgerPaths(tmp_path / name)
    paths.journal.write_bytes(header(0, "L", None) + b"garbage\n" + outcome(2, created("k9", 9)))
    frame = pl.DataFrame(
        {
            "row_key": ["k1", "k2", "k1", "=k3", "k2", "k9"],
            "status": ["failed", "created", "created", "created", "duplicate", "pending"],
            "sir_id": [None, "2", "11", "3", None, None],
        }
    )
    frame = frame.with_columns(source=pl.lit("in.csv"), source_row=pl.int_range(1, 7), attempts=pl.lit("1"))
    columns = list(results_mod.RESULT_SCHEMA)
    frame = frame.with_columns(pl.lit(None, pl.String).alias(c) for c in columns if c not in frame.columns)
    results_mod.write(iter([frame.select(columns).cast(results_mod.RESULT_SCHEMA)]), paths.results)
    repair(paths.results, work)
    state = state_of(paths)
    assert (state["k1"]["status"], state["k1"]["sir_id"]) == ("created", 11)  # its later row
    assert (state["k2"]["status"], state["k2"]["sir_id"]) == ("created", 2)  # a duplicate row was never sent
    assert state["=k3"]["sir_id"] == 3  # a neutralised cell read back as written
    assert state["k9"]["sir_id"] == 9  # the ledger's own record wins over the results file


def test_repair_beside_an_older_copy_of_the_snapshot_refuses_unless_a_count_covers_it(
    tmp_path: Path, work: Path, monkeypatch
):
    """The journal extends a newer snapshot than the one beside it (an older copy restored): the
    keys only the newer one held are gone, and no count says how many. Repair had gone on."""
    paths = snapshot_ledger(tmp_path, monkeypatch, n=20)
    shutil.copy2(paths.snapshot, tmp_path / "older.parquet")
    journal = paths.journal.read_bytes()
    more = [outcome(journal.count(b"\n") + i, created(f"k{90 + i}", 90 + i)) for i in range(10)]
    paths.journal.write_bytes(journal + b"".join(more))
    monkeypatch.setattr(store_mod, "JOURNAL_ROWS", 0)
    compact(paths.journal)  # a newer snapshot, holding k90-k99 too
    shutil.copy2(tmp_path / "older.parquet", paths.snapshot)
    write_results(paths.results, {"k1": "created"})
    with pytest.raises(LedgerError, match=r"r.csv.ledger.parquet is lost \(r.csv.journal extends another copy of it\)"):
        repair(paths.results, work)
    with pytest.raises(LedgerError, match="10 fewer than when the last run finished"):
        repair(paths.results, work, least=30)
    repair(paths.results, work, accept_loss=True)
    assert len(statuses(paths)) == 20


def test_repair_of_a_sound_ledger_keeps_its_form_whatever_the_results_file_adds(
    tmp_path: Path, work: Path, monkeypatch
):
    """It chose the form by records (ledger's + results file's), not keys: 20 keys seen twice
    made a snapshot past a threshold of 30."""
    monkeypatch.setattr(store_mod, "SNAPSHOT_ROWS", 30)
    paths = LedgerPaths(tmp_path / "r.csv")
    paths.journal.write_bytes(header(0, "L", None) + b"".join(outcome(i, created(f"k{i}", i)) for i in range(1, 21)))
    write_results(paths.results, {f"k{i}": "created" for i in range(1, 21)})
    _, marked, held = repair(paths.results, work)
    assert (marked, held) == (0, 20) and not paths.snapshot.exists() and len(statuses(paths)) == 20


def test_rows_the_results_file_never_tried_do_not_count_as_keys_the_ledger_held(tmp_path: Path, work: Path):
    """The last run counted 50 keys (30 of export A, 20 of B); the journal lost A's. The results
    file lists B's 20 created and 30 new rows `pending` (never tried): counted as keys, they had
    made the repaired ledger look whole, and A's 30 rows were sent again."""
    paths = LedgerPaths(tmp_path / "r.csv")
    paths.journal.write_bytes(header(0, "L", None) + b"".join(outcome(i, created(f"b{i}", i)) for i in range(1, 21)))
    write_results(paths.results, {f"b{i}": "created" for i in range(1, 21)} | {f"c{i}": "pending" for i in range(30)})
    with pytest.raises(LedgerError, match="it would hold 20 row_keys, 30 fewer than when the last run finished"):
        repair(paths.results, work, least=50)
    _, _, held = repair(paths.results, work, least=50, accept_loss=True)
    assert held == 50  # the pending rows are kept (as pending); they just vouch for nothing
