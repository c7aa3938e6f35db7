"""The results file: rendered whole or not at all, and read back only when it is one."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import polars as pl
import pytest

from pipeline import loader
from pipeline import results as results_mod
from pipeline.config import Config
from pipeline.errors import InputError, LedgerDamaged, LedgerError
from pipeline.ledger import Ledger, LedgerPaths, compact
from pipeline.ledger import store as store_mod
from pipeline.ledger.records import header, outcome
from pipeline.models import RESULT_COLUMNS, Outcome, Status
from pipeline.pass_one import build_plan
from pipeline.plan import Plan
from pipeline.sandbox import DEFAULT_ORG_ID

from .conftest import make_rows


def planned(tmp_path: Path, source: Path, results: Path, chunk_rows: int | None = None) -> tuple[Plan, Ledger]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    ledger = Ledger.open(results, work, writable=False)
    files = loader.inspect(loader.discover([source]), {}, DEFAULT_ORG_ID)
    config = Config(default_org_id=DEFAULT_ORG_ID)
    if chunk_rows is not None:
        config = dataclasses.replace(config, input=dataclasses.replace(config.input, chunk_rows=chunk_rows))
    return build_plan(files, ledger.view, config, work), ledger


def keyed_rows(n: int) -> dict[str, list[str]]:
    rows = make_rows(n, seed=5)
    rows["request_key"] = [f"k{i}" for i in range(n)]
    return rows


def test_render_writes_every_row_in_input_order_and_removes_stale_temp_files(tmp_path: Path, write_input):
    source = write_input("in.csv", keyed_rows(5))
    dest = tmp_path / "r.csv"
    LedgerPaths(dest).journal.write_bytes(
        header(0, "L", None) + outcome(1, Outcome("k2", Status.CREATED, sir_id=77, attempts=1, updated_at="t"))
    )
    stale = tmp_path / ".r.csv.12345.tmp"
    stale.write_text("left by a run killed while rendering")
    plan, ledger = planned(tmp_path, source, dest)
    results_mod.render(plan, ledger.view, dest)
    frame = results_mod.read(dest)
    assert frame.columns == [*RESULT_COLUMNS, "source_path"]  # the contract's columns, then extensions
    assert frame["row_key"].to_list() == [f"k{i}" for i in range(5)]
    assert frame["status"].to_list() == ["pending", "pending", "created", "pending", "pending"]
    assert frame["sir_id"].to_list() == [None, None, 77, None, None]
    assert not stale.exists() and list(tmp_path.glob(".r.csv.*.tmp")) == []


def test_render_into_a_folder_that_is_gone_raises_ledger_error(tmp_path: Path, write_input):
    source = write_input("in.csv", keyed_rows(3))
    plan, ledger = planned(tmp_path, source, tmp_path / "r.csv")
    (tmp_path / "gone").mkdir()
    dest = tmp_path / "gone" / "r.parquet"
    (tmp_path / "gone").rmdir()
    with pytest.raises(LedgerError, match=f"cannot write results file {dest}"):
        results_mod.render(plan, ledger.view, dest)


def test_a_ledger_found_damaged_while_rendering_leaves_the_old_results_whole(tmp_path: Path, write_input, monkeypatch):
    monkeypatch.setattr(store_mod, "SNAPSHOT_ROWS", 1)
    source = write_input("in.csv", keyed_rows(4))
    dest = tmp_path / "r.csv"
    paths = LedgerPaths(dest)
    paths.journal.write_bytes(
        header(0, "L", None)
        + b"".join(outcome(i + 1, Outcome(f"k{i}", Status.CREATED, sir_id=i, attempts=1)) for i in range(4))
    )
    compact(paths.journal)
    plan, ledger = planned(tmp_path, source, dest)
    results_mod.render(plan, ledger.view, dest)
    before = dest.read_bytes()
    snapshot = pl.read_parquet(paths.snapshot)
    with open(paths.snapshot, "r+b") as fh:  # rewritten in place: the same file, now failing its checksums
        meta = pl.read_parquet_metadata(paths.snapshot)
        snapshot.with_columns(sir_id=pl.col("sir_id") + 1).write_parquet(fh, metadata=meta)
    # the view as the run leaves it (a new one, after its journal is folded) is read afresh
    after_run = Ledger.open(dest, tmp_path / "work", writable=False).view
    with pytest.raises(LedgerDamaged):
        results_mod.render(plan, after_run, dest)
    assert dest.read_bytes() == before and list(tmp_path.glob(".r.csv.*.tmp")) == []


def test_read_refuses_what_is_not_a_results_file(tmp_path: Path):
    with pytest.raises(InputError, match="does not exist"):
        results_mod.read(tmp_path / "none.csv")
    other = tmp_path / "other.csv"
    pl.DataFrame({"row_key": ["a"], "status": ["created"]}).write_csv(other)
    with pytest.raises(InputError, match=r"is not an si-ingest results file \(no column source\)"):
        results_mod.read(other)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="cannot be read"):
        results_mod.read(broken)
    typed = tmp_path / "typed.csv"
    frame = pl.DataFrame({c: ["x"] for c in RESULT_COLUMNS})  # sir_id "x" is not a number
    frame.write_csv(typed)
    with pytest.raises(InputError, match="cannot be read"):
        results_mod.read(typed)


def test_read_types_the_columns(tmp_path: Path):
    path = tmp_path / "r.csv"
    row = dict.fromkeys(RESULT_COLUMNS, "")
    row.update(row_key="k", source="in.csv", source_row="3", status="created", sir_id="0012", attempts="2")
    pl.DataFrame({k: [v] for k, v in row.items()}).write_csv(path)
    frame = results_mod.read(path)
    assert frame.schema["sir_id"] == pl.Int64 and frame["sir_id"][0] == 12 and frame["source_row"][0] == 3
    assert frame.schema["contact_id"] == pl.String


def test_an_input_of_only_invalid_rows_renders_every_row_invalid(tmp_path: Path, write_input):
    rows = keyed_rows(3)
    rows["contact_id"] = ["nope", "", "x-y"]
    source = write_input("in.csv", rows)
    dest = tmp_path / "r.csv"
    plan, ledger = planned(tmp_path, source, dest)
    assert (plan.valid, plan.invalid, plan.to_send) == (0, 3, 0)
    results_mod.render(plan, ledger.view, dest)
    frame = results_mod.read(dest)
    assert frame["status"].to_list() == ["invalid"] * 3
    assert set(frame["error_code"]) <= {"INVALID_UUID", "MISSING_FIELDS"}


def _result_frames(n: int, size: int) -> list[pl.DataFrame]:
    rows = pl.DataFrame(
        {c: [f"={c} {i}" if c == "contact_id" else f"{c}{i}" for i in range(n)] for c in RESULT_COLUMNS}
    )
    rows = rows.with_columns(source_row=pl.int_range(1, n + 1), sir_id=None, attempts=0, http_status=None)
    rows = rows.with_columns(source_path=pl.lit("/in.csv")).cast(results_mod.RESULT_SCHEMA)  # type: ignore[arg-type]
    return [rows.slice(i, size) for i in range(0, n, size)]


def test_a_csv_is_written_in_pieces_as_the_sink_wrote_it_header_once(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(results_mod, "WRITE_ROWS", 25)
    frames = _result_frames(103, 10)
    results_mod.write(iter(frames), tmp_path / "pieces.csv")
    results_mod.sink(pl.concat(frames).lazy(), tmp_path / "sunk.csv")
    assert (tmp_path / "pieces.csv").read_bytes() == (tmp_path / "sunk.csv").read_bytes()
    assert results_mod.read(tmp_path / "pieces.csv").equals(pl.concat(frames))  # neutralised, then restored
    results_mod.write(iter(()), tmp_path / "empty.csv")
    assert (tmp_path / "empty.csv").read_text().splitlines() == [",".join((*RESULT_COLUMNS, "source_path"))]
    results_mod.write(iter(frames), tmp_path / "r.parquet")
    assert pl.read_parquet(tmp_path / "r.parquet").equals(pl.concat(frames))


def test_a_csv_writer_that_falls_behind_holds_back_the_rows_it_is_fed(tmp_path: Path, monkeypatch):
    """A slow disk: rows are made only a piece or two ahead of the write (polars' sink_csv,
    fed from an IO source, ran ahead and held 100-200 MB more at 5M rows)."""
    monkeypatch.setattr(results_mod, "WRITE_ROWS", 10)
    made: list[int] = []
    ahead: list[int] = []
    real = results_mod.append_csv

    def slow(fh, frame, header):  # type: ignore[no-untyped-def]
        time.sleep(0.05)  # the disk is slow: meanwhile the rows are made as far as they may be
        if frame.height:  # not the header line
            ahead.append(len(made) - frame["source_row"][0] // 10 - 1)  # pieces made beyond this one
        real(fh, frame, header)

    def frames():  # type: ignore[no-untyped-def]
        for i, frame in enumerate(_result_frames(100, 10)):
            made.append(i)
            yield frame

    monkeypatch.setattr(results_mod, "append_csv", slow)
    results_mod.write(frames(), tmp_path / "r.csv")
    assert results_mod.read(tmp_path / "r.csv")["source_row"].to_list() == list(range(1, 101))
    assert len(ahead) == 10 and max(ahead) <= 2, ahead


def test_a_full_disk_while_rendering_names_the_reason(tmp_path: Path, write_input, monkeypatch):
    """polars raises the disk's refusal as an OSError without strerror: its text is the reason."""
    source = write_input("in.csv", keyed_rows(3))
    dest = tmp_path / "r.csv"
    plan, ledger = planned(tmp_path, source, dest)

    def full(fh, frame, header):  # type: ignore[no-untyped-def]
        raise OSError("No space left on device (os error 28)")

    monkeypatch.setattr(results_mod, "append_csv", full)
    with pytest.raises(LedgerError, match=r"cannot write results file .*r\.csv: No space left on device"):
        results_mod.render(plan, ledger.view, dest)
    assert not dest.exists() and list(tmp_path.glob(".r.csv.*.tmp")) == []


def test_a_key_shared_by_many_rows_is_held_once_per_key_run(tmp_path: Path, write_input, monkeypatch):
    """An export whose rows all carry one request_key (a batch id, `N/A`): every copy went into
    one key partition, which pass 2 read whole with each row's key text (5M rows: 960 MB; 200k
    rows of one 10 KB key: 3.2 GB; found by a review, h11b). Repeats within a key run are
    settled in pass 1 (the first in input order stays), so a partition holds a key once per run;
    the rows are still each `duplicate` but the first, in a run and in a dry run."""
    from pipeline import pass_one

    monkeypatch.setattr(pass_one, "KEY_RUN_ROWS", 40)
    rows = make_rows(200, seed=8)
    rows["request_key"] = ["batch-2026-11-27"] * 150 + [f"k{i}" for i in range(50)]
    source = write_input("in.csv", rows)
    dest = tmp_path / "r.csv"
    plan, ledger = planned(tmp_path, source, dest, chunk_rows=40)
    held = pl.scan_parquet(plan.key_runs).collect()
    assert len(plan.key_runs) == 5  # batches of 40 rows; the shared key's 150 rows span the first 4
    assert held.filter(pl.col("row_key") == "batch-2026-11-27").height == 4
    assert (plan.duplicate, plan.to_send) == (149, 51)
    results_mod.render(plan, ledger.view, dest)
    statuses = results_mod.read(dest)["status"].to_list()
    assert statuses == ["pending"] + ["duplicate"] * 149 + ["pending"] * 50


def test_a_key_run_ends_at_its_byte_budget(tmp_path: Path, write_input, monkeypatch):
    """10 KB request_keys: 250k of them (a key run's rows) had been held at once, 2.5 GB of key
    text (found by a review, h11b). A run also ends at KEY_RUN_BYTES."""
    from pipeline import pass_one

    monkeypatch.setattr(pass_one, "KEY_RUN_BYTES", 50_000)
    rows = make_rows(60, seed=9)
    rows["request_key"] = [f"{i:04d}" + "k" * 10_000 for i in range(60)]
    source = write_input("in.csv", rows)
    plan, _ = planned(tmp_path, source, tmp_path / "r.csv", chunk_rows=10)
    assert len(plan.key_runs) == 6 and plan.to_send == 60  # 10 keys of ~10 KB per run, not all 60
