"""The ledger through the real CLI against the real sandbox: damage, loss, upgrades, identity."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from pipeline import results as results_mod
from pipeline.sandbox import DEFAULT_ORG_ID as ORG_ID

from .conftest import make_rows, run_cli, wait_for
from .test_resume import cli_process, sending

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "ledger_v1"


def run_args(box, inputs, out: Path, *extra: str) -> list[str]:
    return ["run", *map(str, inputs), "--base-url", box.url, "--results", str(out), "--rate", "500", *extra]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("si-ingest: error:")]


def edit_line(path: Path, index: int, change) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[index] = change(lines[index])
    path.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize(
    "change",
    [
        lambda line: line[:12] + b"\x00" + line[13:],  # one NUL byte
        lambda line: line.replace(b'"s":"created"', b'"s":"Created"'),  # a hand edit of the status
        lambda line: line.replace(b'"n":1', b'"n":"1"'),  # a field of the wrong type
    ],
    ids=["bytes", "status", "type"],
)
def test_a_damaged_record_in_the_middle_stops_the_run_before_any_request(sandbox, write_input, tmp_path, change):
    box = sandbox()
    rows = write_input("a.csv", make_rows(10))
    out = tmp_path / "r.csv"
    assert run_cli(*run_args(box, [rows], out)).code == 0
    journal = tmp_path / "r.csv.journal"
    edit_line(journal, 2, change)  # line 3
    before = box.stats()["requests"]
    again = run_cli(*run_args(box, [rows], out))
    assert again.code == 2 and box.stats()["requests"] == before
    [line] = error_lines(again.stderr)
    assert "r.csv.journal" in line and "record 3" in line and "ledger check" in line
    assert "Traceback" not in again.stderr
    assert run_cli("validate", str(rows), "--results", str(out)).code == 2
    # the way forward: check names the record and the row, repair never makes it sendable
    check = run_cli("ledger", "check", str(out))
    assert check.code == 1 and "record 3" in check.stdout
    repair = run_cli("ledger", "repair", str(out))
    assert repair.code == 0, repair.stderr
    assert run_cli("ledger", "check", str(out)).code == 0
    after = run_cli(*run_args(box, [rows], out))
    assert after.code in (0, 1) and box.stats()["requests"] == before  # nothing resent
    # the damaged row is known again from the results file (created) or else unknown: never pending
    statuses = Counter(results_mod.read(out)["status"])
    assert statuses["created"] + statuses["unknown"] == 10
    assert len(list(tmp_path.glob("r.csv.journal.damaged-*"))) == 1


def _copied_over(journal: Path, early: bytes) -> None:
    with open(journal, "r+b") as fh:  # `cp backup live`: the same file, its content replaced
        fh.truncate(0)
        fh.write(early)


@pytest.mark.parametrize("change", ["deleted", "truncated", "copied over"])
def test_a_journal_lost_mid_run_stops_sending_and_the_next_run_resends_nothing(sandbox, write_input, tmp_path, change):
    """Deleted; or, found by a review (h7c), truncated in place (logrotate's copytruncate) or an
    older copy written over it in place: same device, inode and links, so the run had gone on
    sending, and the next one resent 418-435 of 900 rows."""
    n = 300
    box = sandbox("--latency", "20-40")
    rows = write_input("a.csv", make_rows(n, seed=21))
    out = tmp_path / "r.csv"
    journal = tmp_path / "r.csv.journal"
    proc = sending(box, rows, out, "--rate", "100", "--concurrency", "4", created=5)
    early = journal.read_bytes()
    wait_for(lambda: box.stats()["created"] >= 20, timeout=30)
    if change == "deleted":
        os.unlink(journal)
    elif change == "truncated":
        os.truncate(journal, 0)
    else:
        _copied_over(journal, early)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    [line] = error_lines(stderr)
    said = "deleted, replaced or moved" if change == "deleted" else "changed in place (truncated or written over)"
    assert said in line and "ledger repair" in line, line
    sent = box.stats()["requests"]
    assert sent < n
    frame = results_mod.read(out)  # the results show every row sent: created, or unknown if it was in flight
    by_contact = dict(zip(frame["contact_id"], frame["status"], strict=True))
    assert all(by_contact[r["contact_id"]] in ("created", "unknown") for r in box.created())
    refused = run_cli(*run_args(box, [rows], out))
    assert refused.code == 2 and box.stats()["requests"] == sent
    assert run_cli("ledger", "repair", str(out)).code == 0
    final = run_cli(*run_args(box, [rows], out))
    assert final.code in (0, 1), final.stderr
    contexts = Counter(r["sir_context"] for r in box.created())
    assert max(contexts.values()) == 1  # nothing was created twice
    # every row the API created is created in the results, or unknown: a request in flight when
    # sending stopped may have no answer recorded (it was flaky when it asked for all created)
    final_by_contact = dict(zip(*results_mod.read(out).select("contact_id", "status").to_dict().values(), strict=True))
    assert all(final_by_contact[r["contact_id"]] in ("created", "unknown") for r in box.created())
    assert Counter(final_by_contact.values())["created"] <= len(contexts)


def test_a_re_export_with_upper_case_uuids_resends_nothing(sandbox, write_input, tmp_path):
    box = sandbox()
    rows = make_rows(20, seed=4)
    out = tmp_path / "r.csv"
    assert run_cli(*run_args(box, [write_input("a.csv", rows)], out)).code == 0
    upper = {**rows, "contact_id": [c.upper() for c in rows["contact_id"]]}
    again = run_cli(*run_args(box, [write_input("b.csv", upper)], out))
    assert again.code == 0 and box.stats()["requests"] == 20
    assert set(results_mod.read(out)["status"]) == {"created"}


def test_uuids_go_out_in_their_canonical_lower_case(sandbox, write_input, tmp_path):
    """The row key reads UUIDs in any case as one row, so the request carries that one form: an
    upper-cased export refused by a case-sensitive server, then fixed, would have had the same
    key and been skipped for good. The results file keeps the input as written."""
    box = sandbox()
    rows = make_rows(5, seed=6)
    upper = {**rows, "contact_id": [c.upper() for c in rows["contact_id"]], "org_id": [ORG_ID.upper()] * 5}
    out = tmp_path / "r.csv"
    assert run_cli(*run_args(box, [write_input("a.csv", upper)], out)).code == 0
    sent = box.created()
    assert sorted(r["contact_id"] for r in sent) == sorted(rows["contact_id"])
    assert {r["org_id"] for r in sent} == {ORG_ID.lower()}
    assert results_mod.read(out)["contact_id"].to_list() == upper["contact_id"]


def test_a_ledger_made_by_0_1_upgrades_without_a_resend(sandbox, tmp_path):
    for name in ("input.csv", "si-results.csv", "si-results.csv.journal"):
        shutil.copy(FIXTURE_V1 / name, tmp_path / name)
    out = tmp_path / "si-results.csv"
    v1 = results_mod.read(out)
    box = sandbox()
    first = run_cli(*run_args(box, [tmp_path / "input.csv"], out))
    assert first.code == 1, first.stderr
    assert box.stats()["requests"] == 0
    now = results_mod.read(out)
    assert now["status"].to_list() == v1["status"].to_list()
    assert now["sir_id"].to_list() == v1["sir_id"].to_list()
    assert (tmp_path / "si-results.csv.journal.v1").exists()
    # and a re-export spelling the UUIDs the other way still finds them
    frame = pl.read_csv(tmp_path / "input.csv", infer_schema=False)
    flipped = frame.with_columns(
        contact_id=pl.when(pl.col("contact_id").str.contains("[a-f]"))
        .then(pl.col("contact_id").str.to_uppercase())
        .otherwise(pl.col("contact_id").str.to_lowercase())
    )
    flipped.write_csv(tmp_path / "reexport.csv")
    second = run_cli(*run_args(box, [tmp_path / "reexport.csv"], out))
    assert second.code == 1 and box.stats()["requests"] == 0, second.stderr


def test_results_recording_sends_without_a_ledger_are_refused(sandbox, write_input, tmp_path):
    box = sandbox()
    rows = write_input("a.csv", make_rows(5))
    out = tmp_path / "r.csv"
    assert run_cli(*run_args(box, [rows], out)).code == 0
    (tmp_path / "r.csv.journal").unlink()
    refused = run_cli(*run_args(box, [rows], out))
    assert refused.code == 2 and box.stats()["requests"] == 5
    assert "--new-ledger" in error_lines(refused.stderr)[0]
    fresh = run_cli(*run_args(box, [rows], out, "--new-ledger"))
    assert fresh.code == 0 and box.stats()["requests"] == 10  # on purpose: sent again


def test_rows_left_in_flight_by_a_kill_count_their_try(sandbox, write_input, tmp_path):
    box = sandbox("--latency", "2000-2000")
    rows = write_input("a.csv", make_rows(8))
    out = tmp_path / "r.csv"
    proc = cli_process(*run_args(box, [rows], out, "--concurrency", "8"))
    wait_for(lambda: box.stats()["requests"] >= 8, timeout=30)
    proc.kill()
    proc.wait()
    proc.stderr.close()
    after = run_cli(*run_args(box, [rows], out))
    assert after.code == 1
    frame = results_mod.read(out)
    assert set(frame["status"]) == {"unknown"} and set(frame["attempts"]) == {1}
    assert box.stats()["requests"] == 8


def _cut_to_header(journal: Path) -> None:
    journal.write_bytes(journal.read_bytes().split(b"\n", 1)[0] + b"\n")


def _drop_last_line(journal: Path) -> None:
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:-1]))


@pytest.mark.parametrize("cut", [_cut_to_header, _drop_last_line])
def test_a_journal_that_lost_whole_records_stops_the_run_and_repair_takes_them_back(
    sandbox, write_input, tmp_path, cut
):
    """A journal cut at a line boundary reads as whole; the results file still shows those rows
    sent. The run stops before any request (it had sent them again: 100 of 100, or 1), and
    `ledger repair` takes them back from the results file."""
    box = sandbox()
    rows = write_input("a.csv", make_rows(100, seed=31))
    out = tmp_path / "r.csv"
    assert run_cli(*run_args(box, [rows], out)).code == 0
    cut(tmp_path / "r.csv.journal")
    refused = run_cli(*run_args(box, [rows], out))
    assert refused.code == 2 and box.stats()["requests"] == 100, refused.stderr
    [line] = error_lines(refused.stderr)
    assert "records were lost" in line and "ledger repair" in line  # fewer keys than sealed, or rows gone
    listed = run_cli("ledger", "check", str(out))  # it had said "no damage found"
    assert listed.code == 1 and "records were lost" in listed.stdout  # the keys counted, or the rows sent
    assert run_cli("ledger", "repair", str(out)).code == 0
    again = run_cli(*run_args(box, [rows], out))
    assert again.code == 0, again.stderr
    assert box.stats()["requests"] == 100 and set(results_mod.read(out)["status"]) == {"created"}


def test_an_untouched_finished_job_is_not_read_twice(sandbox, write_input, tmp_path, monkeypatch):
    """The seal: a rerun over files the last run left as they were skips the results check."""
    box = sandbox()
    rows = write_input("a.csv", make_rows(20, seed=32))
    out = tmp_path / "r.csv"
    assert run_cli(*run_args(box, [rows], out)).code == 0
    assert "seal " in (tmp_path / "r.csv.lock").read_text()
    from pipeline.ledger import LedgerPaths, seal

    lock_text = (tmp_path / "r.csv.lock").read_text()
    assert seal.holds(lock_text, LedgerPaths(out))
    os.utime(out)  # the results file touched: the next run checks
    assert not seal.holds(lock_text, LedgerPaths(out))


def test_a_start_over_killed_before_its_results_does_not_lock_the_user_out(sandbox, write_input, tmp_path):
    """`--new-ledger` chose to disregard the old results file; killed before it rendered new ones,
    the next run goes on with the new ledger (it had been refused: the old results' rows were
    'lost' from it, and --new-ledger refused too, a ledger existing)."""
    import signal
    import time

    box = sandbox()
    rows = write_input("a.csv", make_rows(20, seed=33))
    out = tmp_path / "r.csv"
    assert run_cli(*run_args(box, [rows], out)).code == 0
    (tmp_path / "r.csv.journal").rename(tmp_path / "lost.journal")
    proc = cli_process(*run_args(box, [rows], out, "--new-ledger", "--rate", "4"))
    wait_for(lambda: box.stats()["requests"] >= 22, timeout=30)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    again = run_cli(*run_args(box, [rows], out))
    assert again.code in (0, 1) and "missing from it" not in again.stderr, again.stderr
    # rows the killed run had in flight are unknown (kill -9), every other one created
    assert set(results_mod.read(out)["status"]) <= {"created", "unknown"}
    assert run_cli(*run_args(box, [rows], out)).code in (0, 1)  # sealed now: the check applies again


def test_records_lost_for_rows_of_an_earlier_export_are_caught_by_the_key_count(sandbox, write_input, tmp_path):
    """The results file lists the last run's input only; a journal line of an earlier night's row
    cut away passed the results check (the row was sent again). The last finished run sealed how
    many row_keys the ledger held: fewer now stops the run."""
    import orjson

    from pipeline.ledger.records import encode

    box = sandbox()
    night_a = write_input("a.csv", make_rows(30, seed=34, prefix="nightA"))
    night_b = write_input("b.csv", make_rows(30, seed=35, prefix="nightB"))
    out = tmp_path / "r.csv"
    assert run_cli(*run_args(box, [night_a], out)).code == 0
    assert run_cli(*run_args(box, [night_b], out)).code == 0  # the results file now lists B only
    listed = set(results_mod.read(out)["row_key"])
    journal = tmp_path / "r.csv.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    night_a_line = next(
        i for i, line in enumerate(lines[1:], 1) if orjson.loads(line.rpartition(b"\t")[0]).get("k") not in listed
    )
    kept = [orjson.loads(line.rpartition(b"\t")[0]) for i, line in enumerate(lines[1:], 1) if i != night_a_line]
    # a whole, consistent journal without that record (as an older copy would be): renumbered
    journal.write_bytes(lines[0] + b"".join(encode({**record, "q": q}) for q, record in enumerate(kept, 1)))
    refused = run_cli(*run_args(box, [night_a], out))
    assert refused.code == 2 and box.stats()["requests"] == 60, refused.stderr
    assert "59 row_keys, 1 fewer than when the last run finished (60)" in refused.stderr


def _nights(box, write_input, tmp_path):
    """Night 1 sends export A, night 2 export B, night 3 A again (the results file then lists A only)."""
    a = write_input("a.csv", make_rows(30, seed=41))
    b = write_input("b.csv", make_rows(20, seed=42))
    out = tmp_path / "r.csv"
    assert run_cli(*run_args(box, [a], out)).code == 0
    shutil.copy2(tmp_path / "r.csv.journal", tmp_path / "journal.after-night-1")
    assert run_cli(*run_args(box, [b], out)).code == 0
    assert run_cli(*run_args(box, [a], out)).code == 0
    assert box.stats()["requests"] == 50
    return a, b, out


@pytest.mark.parametrize("between", ["ledger check", "a refused run"])
def test_the_key_count_outlives_a_ledger_check_and_a_refused_run(sandbox, write_input, tmp_path, between):
    """A journal restored from an older copy lost B's rows, which the results file (A's) does not
    show: only the key count the last run left in the lock file catches it. `ledger check` and a
    run refused at start had erased that count, and the next night sent B's 20 rows again."""
    box = sandbox()
    _, b, out = _nights(box, write_input, tmp_path)
    if between == "ledger check":
        sealed = _seal_of(tmp_path)
        assert run_cli("ledger", "check", str(out)).code == 0  # on the untouched job: the seal stands
        assert _seal_of(tmp_path) == sealed != []
        shutil.copy2(tmp_path / "journal.after-night-1", tmp_path / "r.csv.journal")
        listed = run_cli("ledger", "check", str(out))
        assert listed.code == 1 and "20 fewer than when the last run finished (50)" in listed.stdout
    else:
        (tmp_path / "r.csv.journal").unlink()  # a cron run starts while the journal is restored
        refused = run_cli(*run_args(box, [b], out))
        assert refused.code == 2 and "ledger (r.csv.journal) is missing" in refused.stderr
        shutil.copy2(tmp_path / "journal.after-night-1", tmp_path / "r.csv.journal")
    night = run_cli(*run_args(box, [b], out))
    assert night.code == 2 and "20 fewer than when the last run finished (50)" in error_lines(night.stderr)[0]
    assert box.stats()["requests"] == 50 and "floor " in (tmp_path / "r.csv.lock").read_text()


def _seal_of(folder: Path) -> list[str]:
    return [line for line in (folder / "r.csv.lock").read_text().splitlines() if line.startswith("seal ")]


def test_repair_refuses_to_forget_a_lost_snapshot_and_a_restored_one_sends_nothing(
    sandbox, write_input, tmp_path, monkeypatch
):
    """The snapshot deleted: the run stops (exit 2) and names `ledger repair`, which had rewritten
    the ledger without the snapshot's keys ("0 rows are now unknown"): every row of an earlier
    export the results file no longer lists would have been sent again."""
    from pipeline.ledger import compact
    from pipeline.ledger import store as store_mod

    box = sandbox()
    a = write_input("a.csv", make_rows(30, seed=43))
    b = write_input("b.csv", make_rows(20, seed=44))
    out = tmp_path / "r.csv"
    assert run_cli(*run_args(box, [a], out)).code == 0
    monkeypatch.setattr(store_mod, "SNAPSHOT_ROWS", 1)
    compact(tmp_path / "r.csv.journal")  # A's rows move into a snapshot (a run does so past 250k keys)
    snapshot = tmp_path / "r.csv.ledger.parquet"
    assert snapshot.exists()
    assert run_cli(*run_args(box, [b], out)).code == 0  # the results file now lists B only
    shutil.copy2(snapshot, tmp_path / "backup.parquet")
    snapshot.unlink()
    refused = run_cli(*run_args(box, [a], out))
    assert refused.code == 2 and "ledger repair" in error_lines(refused.stderr)[0]
    journal = (tmp_path / "r.csv.journal").read_bytes()
    repair = run_cli("ledger", "repair", str(out))
    [line] = error_lines(repair.stderr)
    assert repair.code == 2 and "r.csv.ledger.parquet is lost (it is missing" in line
    assert "30 fewer than when the last run finished (50)" in line and "--accept-loss" in line
    assert (tmp_path / "r.csv.journal").read_bytes() == journal and not snapshot.exists()  # nothing changed
    shutil.copy2(tmp_path / "backup.parquet", snapshot)  # restored, as the message says
    again = run_cli(*run_args(box, [a, b], out))
    assert again.code == 0, again.stderr
    assert box.stats()["requests"] == 50
    snapshot.unlink()
    accepted = run_cli("ledger", "repair", str(out), "--accept-loss")
    assert accepted.code == 0, accepted.stderr
    assert run_cli(*run_args(box, [b], out)).code == 0 and box.stats()["requests"] == 50  # B's rows are known


def test_a_dry_run_that_starts_over_leaves_the_key_count_standing(sandbox, write_input, tmp_path):
    """Left alone last session: `validate --new-ledger` (a dry run: it sends nothing and writes no
    ledger) dropped the key count from the lock file, so the next plain `run`, with the ledger
    and results gone, took itself for a first run and sent every row again. A dry run now changes
    nothing that guards a send: the run is refused until it says --new-ledger itself."""
    box = sandbox()
    a = write_input("a.csv", make_rows(30, seed=45))
    out = tmp_path / "r.csv"
    assert run_cli(*run_args(box, [a], out)).code == 0
    for name in ("r.csv", "r.csv.journal"):  # a clean-up script took the results and the ledger
        (tmp_path / name).unlink()
    refused = run_cli(*run_args(box, [a], out))
    assert refused.code == 2 and error_lines(refused.stderr) == [
        "si-ingest: error: the ledger of r.csv (r.csv.journal) is missing, while the last run finished with 30"
        " row_keys in it; nothing was sent. Restore it from a backup, or pass --new-ledger to start a new one"
        " (rows the old one recorded may then be sent again)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("r.csv")) == ["r.csv.lock"]  # as it was
    looked = run_cli("validate", str(a), "--results", str(out), "--new-ledger")
    assert looked.code == 0, looked.stderr
    again = run_cli(*run_args(box, [a], out))
    assert again.code == 2 and "finished with 30 row_keys" in again.stderr, again.stderr
    assert box.stats()["requests"] == 30
    assert run_cli(*run_args(box, [a], out, "--new-ledger")).code == 0  # said on purpose: sent again
    assert box.stats()["requests"] == 60


@pytest.mark.parametrize("remade", [True, False], ids=["folder made again", "folder gone"])
def test_records_saved_by_a_run_that_lost_its_journal_are_never_passed_over(sandbox, write_input, tmp_path, remade):
    """A script moved the results folder away mid-run and made it again, empty: the run saved its
    records beside the new results path (`.journal.recovered-*`), and the next run, finding no
    journal, took itself for a first run and sent every row again (found by a review, h7c)."""
    n = 300
    box = sandbox("--latency", "20-40")
    rows = write_input("a.csv", make_rows(n, seed=22))
    folder = tmp_path / "night"
    folder.mkdir()
    out = folder / "r.csv"
    proc = sending(box, rows, out, "--rate", "100", "--concurrency", "4")
    folder.rename(tmp_path / "night.old")
    if not remade:
        _, stderr = proc.communicate(timeout=60)  # nowhere to save them: it had been a crash, exit 4
        assert proc.returncode == 2 and "could not be saved" in error_lines(stderr)[0], stderr
        return
    folder.mkdir()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    sent = box.stats()["requests"]
    assert list(folder.glob("r.csv.journal.recovered-*")), sorted(p.name for p in folder.iterdir())
    refused = run_cli(*run_args(box, [rows], out))
    assert refused.code == 2 and "recovered-" in refused.stderr and "ledger repair" in refused.stderr, refused.stderr
    assert box.stats()["requests"] == sent
    repaired = run_cli("ledger", "repair", str(out))
    assert repaired.code == 0, repaired.stdout + repaired.stderr
    final = run_cli(*run_args(box, [rows], out))
    assert final.code in (0, 1), final.stderr
    assert max(Counter(r["sir_context"] for r in box.created()).values()) == 1  # nothing created twice


def test_a_second_run_is_refused_though_the_lock_file_was_removed(sandbox, write_input, tmp_path):
    """`rm -f *.lock` while a run sends let a second run take a new lock file and send from the
    same ledger: 1,649 of 2,000 contacts created twice (found by a review, h7c). The journal is
    held too."""
    n = 200
    box = sandbox("--latency", "20-40")
    rows = write_input("a.csv", make_rows(n, seed=23))
    out = tmp_path / "r.csv"
    first = sending(box, rows, out, "--rate", "100", "--concurrency", "4")
    (tmp_path / "r.csv.lock").unlink()
    second = run_cli(*run_args(box, [rows], out))
    assert second.code == 2 and "another si-ingest run is writing to r.csv.journal" in second.stderr, second.stderr
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr
    assert len(box.created()) == n and max(Counter(r["sir_context"] for r in box.created()).values()) == 1


def test_switching_the_results_suffix_does_not_start_a_second_ledger_in_silence(sandbox, write_input, tmp_path):
    """`--results r.csv` one night, `r.parquet` the next: a new ledger beside the old one, every row
    sent again, exit 0 (found by a review, h7c)."""
    box = sandbox()
    rows = write_input("a.csv", make_rows(10, seed=24))
    assert run_cli(*run_args(box, [rows], tmp_path / "r.csv")).code == 0
    switched = run_cli(*run_args(box, [rows], tmp_path / "r.parquet"))
    assert switched.code == 2 and "r.csv.journal beside r.parquet is the ledger of r.csv" in switched.stderr
    assert box.stats()["requests"] == 10 and not (tmp_path / "r.parquet.journal").exists()


@pytest.mark.parametrize("action", ["check", "repair"])
def test_ledger_commands_on_a_path_with_no_ledger_say_so(tmp_path, action):
    """A mistyped path: `check` said "no damage found" (exit 0) and made a lock file, `repair`
    made an empty journal and said "repaired" (found by a review, h9b)."""
    done = run_cli("ledger", action, str(tmp_path / "typo.csv"))
    assert done.code == 2 and "there is no results file or ledger at" in done.stderr, done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []


def test_validate_new_ledger_never_writes_over_the_last_record_of_sends(sandbox, write_input, tmp_path):
    """The journal lost, the refusal names `ledger repair`, which rebuilds it from the results file;
    previewing with `validate --new-ledger` first rewrote that file all `pending`, the sir_ids gone
    (found by a review, h9b)."""
    box = sandbox()
    a = write_input("a.csv", make_rows(5, seed=46))
    out = tmp_path / "r.csv"
    assert run_cli(*run_args(box, [a], out)).code == 0
    (tmp_path / "r.csv.journal").rename(tmp_path / "moved.journal")
    kept = out.read_bytes()
    looked = run_cli("validate", str(a), "--results", str(out), "--new-ledger")
    assert looked.code == 2 and "would write over" in looked.stderr and "records 5 rows sent" in looked.stderr
    assert out.read_bytes() == kept
    assert run_cli("ledger", "repair", str(out)).code == 0
    assert run_cli(*run_args(box, [a], out)).code == 0 and box.stats()["requests"] == 5
