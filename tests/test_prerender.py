"""validate's results written in pass 1 (result_rows.Prerendered) are the results the plan renders."""

from __future__ import annotations

import os
import string
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import result_rows
from pipeline import results as results_mod
from pipeline.config import Config, InputConfig, RunConfig
from pipeline.ledger import LedgerPaths
from pipeline.runner import run
from pipeline.sandbox import DEFAULT_ORG_ID

from .conftest import make_rows
from .test_ledger_partition import many_keys_journal


def hostile_rows() -> dict[str, list[str]]:
    """30 rows over 5 batches of 7: cells a spreadsheet would run, quotes, commas, line breaks,
    invalid rows, repeats within and across batches, and request keys the ledger knows."""
    rows = make_rows(30, seed=11)
    rows["request_key"] = [f"k{i}" if i % 4 == 0 else "" for i in range(30)]  # k0, k4.. (some in the ledger)
    rows["sir_context"][1] = '=HYPERLINK("http://x","y")'
    rows["sir_context"][2] = "'quoted', with a comma\nand a line break"
    rows["request_key"][5] = "+k5"  # a key a spreadsheet would run
    rows["sir_flag"][6] = "@SUM(A1)"  # invalid, and quoted in its message
    rows["contact_id"][9] = "-not-a-uuid"
    rows["sir_planned_dt"][12] = 'soon, "very"\nsoon'  # invalid: a results cell with a quote and a line break
    for column in rows:  # row 20 repeats row 2 (another batch), row 21 repeats row 20's batch-mate
        rows[column][20] = rows[column][2]
        rows[column][21] = rows[column][19]
    return rows


async def validate_into(folder: Path, name: str, source: Path, *, ledger: bool, rows: int = 30) -> pl.DataFrame:
    folder.mkdir()  # noqa: ASYNC240 - a test's own folder, before the run
    dest = folder / name
    if ledger:
        many_keys_journal(LedgerPaths(dest), 25)  # k0..k24: created, rejected, some left in flight
    config = Config(run=RunConfig(results=dest), input=InputConfig(chunk_rows=7), default_org_id=DEFAULT_ORG_ID)
    result = await run([source], config, None)
    # written in pass 1: a CSV results file, and no ledger (against one, most rows may have a verdict)
    assert (result.plan.prerendered is not None) == (name.endswith(".csv") and not ledger)
    frame = results_mod.read(dest)
    assert frame.height == rows and result.summary.total == rows
    assert not (folder / f"{name}.work").exists()
    return frame.drop("updated_at")


@pytest.mark.parametrize("ledger", [False, True], ids=["no ledger", "ledger"])
@pytest.mark.parametrize("repeats", [False, True], ids=["no repeats", "repeats"])
async def test_results_written_in_pass_1_equal_the_rendered_ones(tmp_path: Path, write_input, ledger, repeats):
    rows = hostile_rows()
    if not repeats:
        rows["sir_context"][20] += " (not a repeat)"
        rows["sir_context"][21] += " (not a repeat)"
    source = write_input("in.csv", rows)
    written = await validate_into(tmp_path / "csv", "r.csv", source, ledger=ledger)
    rendered = await validate_into(tmp_path / "parquet", "r.parquet", source, ledger=ledger)  # spills, rendered
    assert written.equals(rendered)
    status = written["status"].to_list()
    assert (status[6], status[9], status[12]) == ("invalid", "invalid", "invalid")
    assert (status[20] == "duplicate") is repeats and (status[21] == "duplicate") is repeats
    assert (written["row_key"] == "k4").any() and ("created" in status) is ledger
    text = (tmp_path / "csv" / "r.csv").read_text()
    assert "'@SUM(A1)" in text and "'+k5" in text and "'-not-a-uuid" in text  # neutralised as rendered


async def test_batches_without_a_verdict_are_copied_and_the_rest_rendered_again(
    tmp_path: Path, write_input, monkeypatch
):
    copied: list[int] = []
    taken: list[int] = []
    copy, take = result_rows.Prerendered.copy, result_rows.Prerendered.take
    monkeypatch.setattr(result_rows.Prerendered, "copy", lambda self, i, out: (copied.append(i), copy(self, i, out)))
    monkeypatch.setattr(result_rows.Prerendered, "take", lambda self, i: (taken.append(i), take(self, i))[1])
    rows = hostile_rows()  # batches of 7: row 20 repeats row 2 (batch 2), row 21 row 19 (batch 3)
    rows["request_key"][14] = "\ufeffk14"  # batch 2's first cell: polars drops a BOM that starts its input
    source = write_input("in.csv", rows)
    written = await validate_into(tmp_path / "csv", "r.csv", source, ledger=False)
    rendered = await validate_into(tmp_path / "parquet", "r.parquet", source, ledger=False)
    assert (copied, taken) == ([0, 1, 4], [2, 3])
    assert written.equals(rendered)
    assert written["row_key"][14] == "\ufeffk14"


def test_each_batch_copied_or_taken_gives_its_disk_space_back(tmp_path: Path):
    pre = result_rows.Prerendered(tmp_path / "results.csv")
    pre.start()
    rows = pl.DataFrame(
        {c: pl.Series([None] * 3000, dtype=t) for c, t in result_rows.RESULT_SCHEMA.items()}
    ).with_columns(row_key=pl.lit("k" * 60), status=pl.lit("pending"))
    for _ in range(3):
        pre.add(rows)
    pre.close()
    before = os.stat(pre.path).st_blocks
    pre.reopen()
    with open(tmp_path / "out.csv", "wb") as out:
        pre.copy_header(out)
        pre.copy(0, out)
        assert pre.take(1).height == 3000
        pre.copy(2, out)
    pre.close()
    if result_rows._fallocate() is None:
        pytest.skip("no fallocate(2) here")
    assert os.stat(pre.path).st_blocks < before / 4  # holes where the batches were
    assert os.path.getsize(tmp_path / "out.csv") == pre.header_bytes + 2 * (pre.ranges[0][1] - pre.ranges[0][0])


CELL = st.one_of(
    st.sampled_from(["", " ", "keep_warm", "email", "2026-12-01 08:00:00", DEFAULT_ORG_ID.upper()]),
    st.text(alphabet=string.printable + "é€\u00a0'", max_size=12),
)


@st.composite
def exports(draw: st.DrawFn) -> dict[str, list[str]]:
    """Up to 24 rows: valid ones, damaged cells (formula triggers, quotes, line breaks included),
    repeats of earlier rows, request keys."""
    n = draw(st.integers(1, 24))
    rows = make_rows(n, seed=draw(st.integers(0, 3)))
    rows["request_key"] = [""] * n
    for i in range(n):
        if draw(st.booleans()):
            column = draw(st.sampled_from(sorted(rows)))
            rows[column][i] = draw(CELL)
        if i and draw(st.integers(0, 4)) == 0:
            earlier = draw(st.integers(0, i - 1))
            for column in rows:
                rows[column][i] = rows[column][earlier]
    return rows


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=exports(), ledger=st.booleans())
async def test_any_export_written_in_pass_1_equals_its_rendered_results(tmp_path_factory, rows, ledger):
    folder = tmp_path_factory.mktemp("export")
    source = folder / "in.csv"
    pl.DataFrame(rows).write_csv(source)
    written = await validate_into(folder / "csv", "r.csv", source, ledger=ledger, rows=len(rows["contact_id"]))
    rendered = await validate_into(folder / "parquet", "r.parquet", source, ledger=ledger, rows=len(rows["contact_id"]))
    assert written.equals(rendered)


async def test_without_linux_file_calls_the_results_are_the_same(tmp_path: Path, write_input, monkeypatch):
    """macOS has neither posix_fadvise nor copy_file_range: the fsync and plain reads do the work
    (it was an AttributeError, exit 4, after a run had sent every row)."""
    monkeypatch.delattr(os, "posix_fadvise", raising=False)
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    source = write_input("in.csv", hostile_rows())  # repeats: batches copied and rendered again
    written = await validate_into(tmp_path / "csv", "r.csv", source, ledger=False)
    rendered = await validate_into(tmp_path / "parquet", "r.parquet", source, ledger=False)
    assert written.equals(rendered)
