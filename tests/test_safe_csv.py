"""Formula neutralisation: every CSV the tool writes is safe in a spreadsheet and reads back unchanged."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import loader, results, safe_csv
from pipeline.models import ErrorCode, Status
from pipeline.results import RESULT_SCHEMA
from pipeline.safe_csv import ERROR_COLUMNS, TRIGGERS

from .conftest import make_rows, run_cli

SPECIAL = st.sampled_from([*TRIGGERS, "'", "''", "'=", "=+", " =", "\n", '"'])
# arbitrary text, often starting with what a spreadsheet would run or with the escape itself
CELL = st.one_of(st.none(), st.text(), st.builds(lambda a, b: a + b, SPECIAL, st.text()))
STRING_COLUMNS = [c for c, dtype in RESULT_SCHEMA.items() if dtype == pl.String]


def cells_of(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [cell for row in csv.reader(fh) for cell in row]


def assert_safe(path: Path) -> None:
    assert not [cell for cell in cells_of(path) if cell.startswith(TRIGGERS)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.fixed_dictionaries(dict.fromkeys(STRING_COLUMNS, CELL)), min_size=1, max_size=8))
def test_a_results_csv_reads_back_as_written_and_runs_nothing(rows):
    frame = pl.DataFrame(rows, schema=dict.fromkeys(STRING_COLUMNS, pl.String)).with_columns(
        source_row=pl.int_range(1, len(rows) + 1, dtype=pl.Int64),
        sir_id=pl.lit(2**63 - 1, pl.Int64),
        attempts=pl.lit(None, pl.Int64),
        http_status=pl.lit(200, pl.Int64),
    )
    frame = frame.select(list(RESULT_SCHEMA)).cast(RESULT_SCHEMA)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "r.csv"
        results.sink(frame.lazy(), dest)
        assert_safe(dest)
        assert results.read(dest).equals(frame)


# an error file's own columns: the tool's statuses and codes, any message
VERDICT = st.tuples(
    st.sampled_from([s.value for s in Status]),
    st.one_of(st.none(), st.sampled_from([*(c.value for c in ErrorCode), "HTTP_429"])),
    CELL,
)
NAME = st.one_of(st.text(min_size=1), st.builds(lambda a, b: a + b, SPECIAL, st.text())).filter(
    lambda n: n not in ERROR_COLUMNS and n != loader.ROW_INDEX and not n.startswith("\ufeff") and n.strip()
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(NAME, min_size=1, max_size=4, unique_by=safe_csv.neutralise_name).flatmap(
        lambda names: st.tuples(
            st.just(names),
            st.lists(
                st.tuples(st.lists(CELL, min_size=len(names), max_size=len(names)), VERDICT).map(
                    lambda row: [*row[0], *row[1]]
                ),
                min_size=1,
                max_size=6,
            ),
        )
    )
)
def test_an_error_file_reads_back_as_written_when_fed_to_run(case):
    names, rows = case
    columns = [*names, *ERROR_COLUMNS]
    frame = pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String), orient="row")
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "errors.csv"
        results.sink(frame.lazy(), dest)
        assert_safe(dest)
        file = loader.describe(dest)
        assert file.written_by_tool and list(file.header) == columns
        back = pl.concat(loader.raw_batches(file, 4))
        assert back.drop(loader.ROW_INDEX).equals(frame)


def test_a_users_own_quote_is_data_in_any_other_file(write_input):
    rows = make_rows(2)
    rows["sir_context"] = ["'kept", "=kept too"]
    rows["status"] = ["a", "b"]  # a column named status alone does not make it the tool's file
    file = loader.inspect([write_input("in.csv", rows)], {}, "org")[0]
    assert not file.written_by_tool
    assert pl.concat(loader.batches(file, 10, "org"))["sir_context"].to_list() == ["'kept", "=kept too"]


def test_results_keys_that_look_like_formulas_survive_results_and_repair(sandbox, write_input, tmp_path):
    keys = ["=k1", "-k2", "'k3", "@k4", "+k5", "\tk6"]
    rows = make_rows(len(keys), seed=8)
    rows["request_key"] = keys
    rows["sir_context"] = ["=1+1", "-2", "'3", "@4", "+5", "six"]
    source = write_input("in.csv", rows)
    box = sandbox()
    out = tmp_path / "r.csv"
    args = ("run", str(source), "--base-url", box.url, "--results", str(out))
    assert run_cli(*args).code == 0
    assert_safe(out)
    assert "'=k1" in cells_of(out) and "''k3" in cells_of(out)
    assert results.read(out)["row_key"].to_list() == [k.strip() for k in keys]  # keys are trimmed
    assert run_cli("report", str(out)).code == 0
    (tmp_path / "r.csv.journal").unlink()  # the ledger is lost: repair takes the keys from the results
    assert run_cli("ledger", "repair", str(out)).code == 0
    again = run_cli(*args)
    assert again.code == 0, again.stderr
    assert box.stats()["requests"] == len(keys)  # nothing sent twice
    assert [r["sir_context"] for r in box.created()] == rows["sir_context"]


@settings(max_examples=200, deadline=None)
@given(st.lists(CELL, min_size=1, max_size=20))
def test_exactly_the_cells_starting_with_a_trigger_or_a_quote_get_one_quote(cells):
    expected = [None if c is None else ("'" + c if c[:1] in (*TRIGGERS, "'") else c) for c in cells]
    got = safe_csv.neutralise(pl.DataFrame({"c": cells}, schema={"c": pl.String}))["c"].to_list()
    assert got == expected  # neither fewer (unsafe) nor more (a round trip alone would not see it)


def test_a_users_export_ending_in_the_error_columns_is_read_as_it_is(tmp_path):
    """A ticket export ending in `status,error_code,error_message` was taken for the tool's error
    file and one leading `'` taken off every cell: `'Tis the season` was sent as `Tis the season`
    (found by a review, h7b). Its statuses and codes are not the tool's, so it is the user's."""
    path = tmp_path / "tickets.csv"
    path.write_text("note,status,error_code,error_message\n'Tis the season,open,E42,\n")
    file = loader.describe(path)
    assert not file.written_by_tool
    assert pl.concat(loader.raw_batches(file, 10))["note"].to_list() == ["'Tis the season"]
