"""The error file: `report --errors`, fixed in place, fed back to `run` (the real CLI, the real sandbox)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from pipeline import errorfile, loader, report, results
from pipeline.errors import InputError
from pipeline.safe_csv import TRIGGERS

from .conftest import DEFAULT_ORG_ID, make_rows, run_cli, server_contexts

ERROR_COLUMNS = ["status", "error_code", "error_message"]
# the input's own columns, ignored ones first and between, as an export would have them
HEADER = ["notes", "contact_id", "sir_flag", "owner", "sir_channel", "sir_context", "sir_planned_dt"]


def ingest(box, inputs, out: Path, *extra: str):
    return run_cli(
        "run", *map(str, inputs), "--base-url", box.url, "--results", str(out), "--rate", "500", *extra
    )  # fmt: skip


def export() -> dict[str, list[str]]:
    rows = make_rows(10, seed=9, prefix="ef")
    rows["notes"] = [f"note {i}" for i in range(10)]
    rows["owner"] = [f"owner{i}" for i in range(10)]
    rows["sir_flag"][1] = "keepwarm"  # row 2: invalid flag
    rows["sir_channel"][2] = "fax"  # row 3: invalid channel
    rows["contact_id"][4] = "00000000-0000-4000-8000-000000000000"  # row 5: not a contact -> NOT_FOUND
    for column in rows:
        rows[column][6] = rows[column][5]  # row 7 repeats row 6 -> duplicate
    rows["sir_flag"][7] = "warm"  # row 8: invalid flag, with cells a spreadsheet would run
    rows["notes"][7] = '=HYPERLINK("http://evil","x")'
    rows["owner"][7] = "'quoted"
    rows["sir_context"][7] = "-call back @noon"
    return {column: rows[column] for column in HEADER}


def raw_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_round_trip_report_fix_refeed_sends_only_the_fixed_rows(sandbox, write_input, tmp_path):
    rows = export()
    contacts = tmp_path / "contacts.txt"
    contacts.write_text("\n".join(c for i, c in enumerate(rows["contact_id"]) if i != 4))
    box = sandbox("--contacts", str(contacts))
    source = write_input("export.csv", rows)
    out = tmp_path / "res.csv"
    first = ingest(box, [source], out)
    assert first.code == 1, first.stderr
    sent_first = box.stats()["requests"]
    assert sent_first == 6  # 10 rows - 3 invalid - 1 duplicate (the NOT_FOUND one is sent)

    errors = tmp_path / "errors.csv"
    rep = run_cli("report", str(out), "--errors", str(errors), "--inputs", str(source))
    assert rep.code == 0, rep.stderr
    assert f"error file: {errors}  (5 rows" in rep.stdout
    table = raw_csv(errors)
    assert table[0] == HEADER + ERROR_COLUMNS
    body = table[1:]
    assert [r[HEADER.index("sir_context")] for r in body] == [
        "ef 1", "ef 2", "ef 4", "ef 5", "'-call back @noon"
    ]  # fmt: skip
    assert [r[-3:-1] for r in body] == [
        ["invalid", "INVALID_FLAG"],
        ["invalid", "INVALID_CHANNEL"],
        ["rejected", "NOT_FOUND"],
        ["duplicate", "DUPLICATE_KEY"],
        ["invalid", "INVALID_FLAG"],
    ]
    assert body[4][:4] == ['\'=HYPERLINK("http://evil","x")', rows["contact_id"][7], "warm", "''quoted"]
    assert not any(cell.startswith(TRIGGERS) for row in table for cell in row)

    # the user fixes the flags and the channel in a spreadsheet and saves the file as it is
    fixes = {"keepwarm": "keep_warm", "warm": "form_action_email", "fax": "email"}
    edited = pl.read_csv(errors, infer_schema=False).with_columns(
        pl.col("sir_flag").replace(fixes), pl.col("sir_channel").replace(fixes)
    )
    edited.write_csv(errors)

    second = ingest(box, [errors], out)
    assert second.code == 1, second.stderr  # the NOT_FOUND row is still rejected
    assert box.stats()["requests"] == sent_first + 3  # only the three fixed rows left
    # as the user wrote them; the three go out together, so in any order
    assert sorted(server_contexts(box)[-3:]) == sorted(["ef 1", "ef 2", "-call back @noon"])
    assert sorted(r["sir_flag"] for r in box.created()[-3:]) == sorted(
        ["keep_warm", rows["sir_flag"][2], "form_action_email"]
    )

    again = run_cli("report", str(out), "--errors", str(errors), "--inputs", str(errors))
    assert again.code == 0, again.stderr
    table = raw_csv(errors)
    assert table[0] == HEADER + ERROR_COLUMNS  # the old verdict columns replaced, not repeated
    assert [r[-3:-1] for r in table[1:]] == [["rejected", "NOT_FOUND"]]
    assert table[1][HEADER.index("contact_id")] == rows["contact_id"][4]

    third = ingest(box, [errors], out)  # nothing fixed: nothing sent
    assert third.code == 1 and box.stats()["requests"] == sent_first + 3


def test_inputs_come_from_the_run_document_else_the_results(write_input, tmp_path):
    rows = export()
    source = write_input("export.csv", rows)
    out = tmp_path / "res.csv"
    assert run_cli("validate", str(source), "--results", str(out)).code == 1  # every row pending or invalid
    errors = tmp_path / "errors.csv"
    recorded = run_cli("report", str(out), "--errors", str(errors))  # no run document: the results' source_path
    assert recorded.code == 0, recorded.stderr
    assert [r[1] for r in raw_csv(errors)[1:]] == rows["contact_id"]

    doc = report.run_document_path(out)
    doc.write_text(json.dumps({"inputs": ["export.csv"], "results": "res.csv"}))
    errors.unlink()
    found = run_cli("report", out.name, "--errors", errors.name, cwd=tmp_path)  # relative to the run's folder
    assert found.code == 0, found.stderr
    assert [r[1] for r in raw_csv(errors)[1:]] == rows["contact_id"]

    source.rename(tmp_path / "moved.csv")
    gone = run_cli("report", out.name, "--errors", errors.name, cwd=tmp_path)
    assert gone.code == 2
    line = gone.stderr.strip()
    assert "\n" not in line and "export.csv of the run" in line and "no longer exists" in line and "--inputs" in line

    doc.unlink()
    older = tmp_path / "older.csv"  # a results file without source_path, and no run document
    results.sink(results.scan(out).drop("source_path"), older)
    missing = run_cli("report", str(older), "--errors", str(errors))
    assert missing.code == 2
    line = missing.stderr.strip()
    assert "\n" not in line and "older.csv.run.json is missing" in line and "--inputs PATH" in line
    moved = run_cli("report", str(older), "--errors", str(errors), "--inputs", str(tmp_path / "moved.csv"))
    assert moved.code == 2 and "no input is named export.csv" in moved.stderr
    (tmp_path / "moved.csv").rename(source)
    assert run_cli("report", str(older), "--errors", str(errors), "--inputs", str(tmp_path)).code == 0


def test_a_changed_input_or_a_bad_destination_is_refused(write_input, tmp_path):
    source = write_input("export.csv", export())
    out = tmp_path / "res.csv"
    run_cli("validate", str(source), "--results", str(out))
    with pytest.raises(InputError, match=r"must end in \.csv or \.parquet"):
        errorfile.write(out, tmp_path / "errors.txt", [source])
    with pytest.raises(InputError, match="would replace the results file"):
        errorfile.write(out, out, [source])
    with pytest.raises(InputError, match=r"no input is named export\.csv"):
        errorfile.write(out, tmp_path / "e.csv", [write_input("other.csv", export())])
    write_input("export.csv", pl.DataFrame(export()).head(9))
    with pytest.raises(InputError, match="has 9 data rows but the run read 10"):
        errorfile.write(out, tmp_path / "e.csv", [source])
    assert not (tmp_path / "e.csv").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp or work left
    assert run_cli("report", str(out), "--inputs", str(source)).code == 2


def test_many_blocks_and_inputs_stay_in_input_order(sandbox, write_input, tmp_path):
    first = make_rows(40, seed=1, prefix="a")
    first["sir_flag"] = ["bad" if i % 7 == 0 else f for i, f in enumerate(first["sir_flag"])]
    second = make_rows(30, seed=2, prefix="b")
    second["sir_channel"] = ["fax" if i % 4 == 1 else c for i, c in enumerate(second["sir_channel"])]
    second["@extra"] = [str(i) for i in range(30)]  # a column name a spreadsheet would run
    a, b = write_input("a.csv", first), write_input("b.csv", second)
    out = tmp_path / "res.csv"
    assert ingest(sandbox(), [a, b], out).code == 1
    dest = tmp_path / "errors.csv"
    assert errorfile.write(out, dest, [a, b], chunk_rows=3) == 6 + 8
    assert raw_csv(dest)[0] == [*first, "'@extra", *ERROR_COLUMNS]
    frame = pl.concat(loader.raw_batches(loader.describe(dest), 5))  # as run reads it
    assert frame.columns == [*first, "@extra", *ERROR_COLUMNS, loader.ROW_INDEX]
    assert frame["sir_context"].to_list() == [f"a {i}" for i in range(0, 40, 7)] + [f"b {i}" for i in range(1, 30, 4)]
    assert frame["@extra"].to_list() == [None] * 6 + [str(i) for i in range(1, 30, 4)]
    assert results.read(out).height == 70


def test_parquet_input_and_output_keep_what_run_reads(sandbox, write_input, tmp_path):
    frame = pl.DataFrame(export()).with_columns(
        sir_planned_dt=pl.lit(dt.date(2026, 12, 1)), owner=pl.Series([1, 2, -3, *range(4, 11)])
    )
    source = write_input("export.parquet", frame)
    out = tmp_path / "res.csv"
    run_cli("validate", str(source), "--results", str(out))
    as_parquet = tmp_path / "errors.parquet"
    errorfile.write(out, as_parquet, [source])
    typed = pl.read_parquet(as_parquet)  # validate sent nothing: every row is pending or invalid
    assert typed.schema["sir_planned_dt"] == pl.Date and typed["owner"].to_list() == frame["owner"].to_list()
    as_csv = tmp_path / "errors.csv"
    errorfile.write(out, as_csv, [source])
    table = raw_csv(as_csv)
    assert {r[HEADER.index("sir_planned_dt")] for r in table[1:]} == {"2026-12-01 00:00:00"}  # as run reads it
    assert [r[HEADER.index("owner")] for r in table[1:4]] == ["1", "2", "'-3"]
    fixed = pl.read_csv(as_csv, infer_schema=False)
    fixed.with_columns(sir_flag=pl.lit("keep_warm"), sir_channel=pl.lit("email")).write_csv(as_csv)
    box = sandbox()
    assert ingest(box, [as_csv], tmp_path / "res2.csv").code == 1  # row 7 is still a repeat of row 6
    assert [r["sir_planned_dt"] for r in box.created()] == ["2026-12-01 00:00:00"] * 9


def test_no_errors_gives_a_header_only_and_clean_inputs_are_skipped(sandbox, write_input, tmp_path):
    good, other = write_input("good.csv", make_rows(5, seed=1)), write_input("other.csv", make_rows(5, seed=2))
    out = tmp_path / "res.csv"
    assert ingest(sandbox(), [good, other], out).code == 0
    dest = tmp_path / "errors.csv"
    assert errorfile.write(out, dest, [good, other]) == 0
    assert raw_csv(dest) == [[*make_rows(1), *ERROR_COLUMNS]]
    assert errorfile.write(out, tmp_path / "errors.parquet", [tmp_path]) == 0  # a folder, as run takes it


def test_what_cannot_be_joined_is_refused_with_one_line(write_input, tmp_path):
    rows = export()
    source = write_input("export.csv", rows)
    out = tmp_path / "res.csv"
    run_cli("validate", str(source), "--results", str(out))
    dest = tmp_path / "e.csv"
    doc = report.run_document_path(out)
    for text, needle in (("{", "cannot be read"), ('{"inputs": "export.csv"}', "not a list of paths")):
        doc.write_text(text)
        with pytest.raises(InputError, match=needle):
            errorfile.run_inputs(out)
        assert errorfile.run_inputs(out, [source]) == [source]  # the results' source_path then
    doc.write_text(json.dumps({"inputs": ["export.csv"], "cwd": str(tmp_path), "results": str(out)}))
    assert errorfile.write(out, dest) == 10  # relative to the run's folder as the document records it
    with pytest.raises(InputError, match="does not exist"):
        errorfile.write(out, dest, [tmp_path / "nope.csv"])
    with pytest.raises(InputError, match="folder of the error file"):
        errorfile.write(out, tmp_path / "gone" / "e.csv", [source])
    with pytest.raises(InputError, match="not an si-ingest results file"):
        errorfile.write(source, dest, [source])
    (tmp_path / "sub").mkdir()
    twin = write_input("sub/export.csv", rows)
    with pytest.raises(InputError, match=r"two inputs are named export\.csv"):
        errorfile.write(out, dest, [source, twin])
    shuffled = tmp_path / "shuffled.parquet"
    results.read(out).reverse().write_parquet(shuffled)
    with pytest.raises(InputError, match="not in input order"):
        errorfile.write(shuffled, dest, [source])
    source.write_text(source.read_text() + "1,2\n")  # a short row now
    with pytest.raises(InputError, match="data row 11 has 2 fields"):
        errorfile.write(out, dest, [source])


def test_a_header_that_repeats_a_name_once_read_back_is_refused(tmp_path):
    path = tmp_path / "errors.csv"
    path.write_text("'a,a,status,error_code,error_message\n1,2,invalid,INVALID_UUID,5\n")
    with pytest.raises(InputError, match="names a column twice"):
        loader.describe(path)


def test_a_parquet_column_run_ignores_that_has_no_plain_text_goes_into_a_csv_error_file(write_input, tmp_path):
    """A list, struct, binary or duration column the tool ignores stopped a CSV error file with
    polars' "cannot cast List type" and no column named (found by a review, h7b)."""
    frame = pl.DataFrame(export()).with_columns(
        tags=pl.Series([[1, 2]] * 10),
        meta=pl.Series([{"a": 1, "b": "x"}] * 10),
        blob=pl.Series([b"\x00\xff"] * 10),
        wait=pl.Series([dt.timedelta(seconds=5)] * 10),
    )
    source = write_input("export.parquet", frame)
    out = tmp_path / "res.csv"
    run_cli("validate", str(source), "--results", str(out))
    as_csv = tmp_path / "errors.csv"
    errorfile.write(out, as_csv, [source])
    row = pl.read_csv(as_csv, infer_schema=False).row(0, named=True)
    assert (row["tags"], row["meta"], row["blob"], row["wait"]) == ("[1,2]", '{"a":1,"b":"x"}', "00ff", "PT5S")


def test_two_inputs_with_one_name_are_named_when_an_error_file_cannot_part_them(write_input, tmp_path):
    """f/a.csv and g/a.csv in one validate: `report --errors` said "not in input order; rerun",
    which no rerun could mend (found by a review, h7b)."""
    for folder, seed in (("f", 1), ("g", 2)):
        (tmp_path / folder).mkdir()
        rows = make_rows(3, seed=seed)
        rows["sir_flag"][0] = "bad"
        pl.DataFrame(rows).write_csv(tmp_path / folder / "a.csv")
    out = tmp_path / "res.csv"
    assert run_cli("validate", str(tmp_path / "f"), str(tmp_path / "g"), "--results", str(out)).code == 1
    refused = run_cli("report", str(out), "--errors", str(tmp_path / "e.csv"))
    assert refused.code == 2 and "f/a.csv and " in refused.stderr and "g/a.csv are both named a.csv" in refused.stderr


def test_inputs_recorded_in_the_results_keep_the_runs_order(write_input, tmp_path):
    """With no run document (every validate, a run without --summary-json) the inputs come from
    the results' recorded paths: they had come back in no fixed order, and each call wrote the
    inputs' rows and columns in another order (found by a review, h13)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in "abc":
        rows = make_rows(12, seed=ord(name), prefix=name)
        rows["sir_flag"] = ["bad"] * 12
        rows[f"extra_{name}"] = ["x"] * 12
        pl.DataFrame(rows).write_csv(folder / f"{name}.csv")
    out = tmp_path / "res.csv"
    assert run_cli("validate", str(folder), "--results", str(out), env={"ZYNTRO_ORG_ID": DEFAULT_ORG_ID}).code == 1
    for attempt in range(4):
        dest = tmp_path / f"errors{attempt}.csv"
        assert errorfile.write(out, dest) == 36
        frame = pl.read_csv(dest, infer_schema=False)
        assert [c for c in frame.columns if c.startswith("extra_")] == ["extra_a", "extra_b", "extra_c"]
        assert frame["sir_context"].to_list() == [f"{n} {i}" for n in "abc" for i in range(12)]
