import gzip
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from pipeline import loader
from pipeline.errors import InputError

HEADER = "org_id,contact_id,sir_flag,sir_context,sir_planned_dt,sir_channel"


def load(paths, columns=None, default_org=None, chunk=1000) -> pl.DataFrame:
    files = loader.inspect(loader.discover(paths), columns or {}, default_org)
    return pl.concat([b for f in files for b in loader.batches(f, chunk, default_org)])


def test_csv_strings_survive_and_rows_are_numbered(tmp_path: Path):
    path = tmp_path / "a.csv"
    path.write_text(HEADER + ",extra\n" + "NA,007,keep_warm,x,2026-01-01 00:00:00,email,1\n" * 3)
    frame = load([path], chunk=2)
    assert frame["contact_id"].to_list() == ["007"] * 3 and frame["org_id"][0] == "NA"
    assert frame["source_row"].to_list() == [1, 2, 3] and set(frame["source"]) == {"a.csv"}
    assert "extra" not in frame.columns


def test_csv_gz_and_folder_of_files(tmp_path: Path):
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress((HEADER + "\no,c,f,x,d,e\n").encode()))
    (tmp_path / "a.csv").write_text(HEADER + "\no,c,f,x,d,e\no,c,f,x,d,e\n")
    (tmp_path / "notes.txt").write_text("ignored")
    frame = load([tmp_path])
    assert frame["source"].to_list() == ["a.csv", "a.csv", "b.csv.gz"]


def test_parquet_typed_columns_become_strings(tmp_path: Path):
    path = tmp_path / "p.parquet"
    pl.DataFrame(
        {
            "org_id": ["o"],
            "contact_id": [12],
            "sir_flag": ["f"],
            "sir_context": ["x"],
            "sir_planned_dt": [datetime(2026, 4, 5, 9, 0)],
            "sir_channel": ["email"],
        }
    ).write_parquet(path)
    frame = load([path])
    assert frame.row(0, named=True)["sir_planned_dt"] == "2026-04-05 09:00:00"
    assert frame["contact_id"][0] == "12"


def test_mapping_default_org_and_missing_columns(tmp_path: Path):
    path = tmp_path / "x.csv"
    path.write_text("Contact,Action,Notes,When,Channel,org_id\nc,f,x,d,e,\n")
    columns = {
        "contact_id": "Contact",
        "sir_flag": "Action",
        "sir_context": "Notes",
        "sir_planned_dt": "When",
        "sir_channel": "Channel",
    }
    assert load([path], columns, default_org="ORG")["org_id"].to_list() == ["ORG"]
    with pytest.raises(InputError, match="no column 'Nope'"):
        load([path], {**columns, "sir_status": "Nope"})
    with pytest.raises(InputError, match="missing required column 'sir_flag'"):
        load([path], {k: v for k, v in columns.items() if k != "sir_flag"})
    no_org = tmp_path / "y.csv"
    no_org.write_text("contact_id,sir_flag,sir_context,sir_planned_dt,sir_channel\nc,f,x,d,e\n")
    with pytest.raises(InputError, match="ZYNTRO_ORG_ID"):
        load([no_org])


def test_empty_folder_is_an_input_error(tmp_path: Path):
    with pytest.raises(InputError, match=r"no .csv"):
        loader.discover([tmp_path])
