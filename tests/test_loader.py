import gzip
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline import csv_blocks, loader
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


def test_ragged_rows_stop_the_file_either_way(tmp_path: Path):
    short = tmp_path / "short.csv"
    short.write_text(HEADER + "\no,c,f,x,d,e\no,c,f,x,d\n")
    with pytest.raises(InputError, match=r"short.csv: data row 2 has 5 fields where the header has 6"):
        load([short])
    long = tmp_path / "long.csv"
    long.write_text(HEADER + "\no,c,f,x,d,e,EXTRA\n")
    with pytest.raises(InputError, match=r"data row 1 has 7 fields"):
        load([long])


def test_duplicate_column_names_are_named(tmp_path: Path):
    path = tmp_path / "dup.csv"
    path.write_text(HEADER + ",sir_flag,contact_id\no,c,f,x,d,e,g,h\n")
    with pytest.raises(InputError, match=r"more than once \('contact_id', 'sir_flag'\)"):
        load([path])


def test_quoted_newlines_blank_lines_bom_and_crlf(tmp_path: Path):
    path = tmp_path / "q.csv"
    text = HEADER + '\r\no,c,f,"line one\n\nline ""three""",d,e\r\n\r\n\no,c2,f,x,d,e'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    frame = load([path], chunk=1)
    assert frame["sir_context"].to_list() == ['line one\n\nline "three"', "x"]
    assert frame["contact_id"].to_list() == ["c", "c2"] and frame["source_row"].to_list() == [1, 2]


def test_unclosed_quote_is_an_input_error(tmp_path: Path):
    path = tmp_path / "open.csv"
    path.write_text(HEADER + '\no,c,f,"never closed,d,e\n')
    with pytest.raises(InputError, match="never closes"):
        load([path])


def test_blocks_cut_only_between_records(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(loader.csv_blocks, "BLOCK_BYTES", 7)
    path = tmp_path / "small.csv"
    rows = [f'o,c{i},f,"x, {i}\nmore",d,e' for i in range(50)]
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    frame = load([path], chunk=3)
    assert frame["contact_id"].to_list() == [f"c{i}" for i in range(50)]
    assert frame["source_row"].to_list() == list(range(1, 51))


def test_a_cell_starting_with_a_byte_order_mark_keeps_it_where_a_block_starts(tmp_path: Path, monkeypatch):
    """polars drops a BOM at the start of its input; a block of the file starts at a record, so
    a first cell's own U+FEFF was lost whenever its record began a block."""
    monkeypatch.setattr(loader.csv_blocks, "BLOCK_BYTES", 7)  # about every record starts a block
    path = tmp_path / "bom.csv"
    rows = [f"\ufefforg{i},c{i},f,x,d,e" for i in range(20)]
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    frame = load([path], chunk=3)
    assert frame["org_id"].to_list() == [f"\ufefforg{i}" for i in range(20)]
    assert frame["contact_id"].to_list() == [f"c{i}" for i in range(20)]


def test_parquet_dates_times_and_numbers(tmp_path: Path):
    path = tmp_path / "t.parquet"
    from datetime import UTC, date

    base = {"org_id": ["o"] * 4, "contact_id": [1, 2, 3, 4], "sir_flag": ["f"] * 4, "sir_context": ["x"] * 4}
    pl.DataFrame({**base, "sir_planned_dt": [date(2026, 4, 5)] * 4, "sir_channel": ["e"] * 4}).write_parquet(path)
    assert set(load([path])["sir_planned_dt"]) == {"2026-04-05 00:00:00"}
    times = [datetime(2026, 4, 5, 9), datetime(2026, 4, 5, 9, 0, 0, 500_000), datetime(2026, 4, 5, 9), None]
    pl.DataFrame({**base, "sir_planned_dt": times, "sir_channel": ["e"] * 4}).write_parquet(path)
    out = load([path])["sir_planned_dt"].to_list()
    assert out[0] == "2026-04-05 09:00:00" and out[1] != "2026-04-05 09:00:00" and out[3] is None
    aware = [datetime(2026, 4, 5, 9, tzinfo=UTC)] * 4
    pl.DataFrame({**base, "sir_planned_dt": aware, "sir_channel": ["e"] * 4}).write_parquet(path)
    assert "+00" in load([path])["sir_planned_dt"][0]  # kept as text: validation calls it INVALID_DATETIME


def test_a_file_with_bare_cr_line_ends_is_named_as_such(tmp_path):
    """Old Mac line ends read as one long header line: it had been refused as 'the header names a
    column more than once', which sends the user looking in the wrong place."""
    path = tmp_path / "mac.csv"
    path.write_bytes(b"contact_id,sir_flag\r" + b"a,b\r" * 3)
    with pytest.raises(InputError, match="bare CR"):
        loader.inspect(loader.discover([path]), {}, None)


@pytest.mark.parametrize("odd", ["b.CSV", "c.Parquet", "dangling.csv", "sub.csv"])
def test_an_input_folder_entry_that_would_not_be_read_stops_the_run(tmp_path, odd):
    """`b.CSV` (a Windows export) and a link to an unmounted share had been skipped without a
    word: the run exited 0 with their rows missing."""
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("x\n1\n")
    if odd == "dangling.csv":
        os.symlink(tmp_path / "gone.csv", folder / odd)
    elif odd == "sub.csv":
        (folder / odd).mkdir()
    else:
        (folder / odd).write_text("x\n1\n")
    with pytest.raises(InputError, match=re.escape(odd)):
        loader.discover([folder])


@pytest.mark.parametrize(
    "context",
    [
        pl.Series("sir_context", [{"a": 1, "b": "x"}]),
        pl.Series("sir_context", [["x", "y"]]),
        pl.Series("sir_context", [1_000_000], dtype=pl.Duration("us")),
        pl.Series("sir_context", [b"\xff\xfe"], dtype=pl.Binary),
    ],
)
def test_a_parquet_column_with_no_text_for_the_api_stops_the_run_naming_it(tmp_path, context):
    """A struct had been sent as polars' own rendering (`{1,"x"}`); a list or a duration stopped
    the run with polars' words and no column named."""
    frame = pl.DataFrame(
        {
            "org_id": ["5f0c2a9e-3b1d-4c8e-9a47-2d6b8e1f0c3a"],
            "contact_id": ["6b86b273-ff34-4ce1-ad6b-000000000001"],
            "sir_flag": ["keep_warm"],
            "sir_channel": ["email"],
            "sir_planned_dt": ["2027-01-01 09:00:00"],
        }
    ).with_columns(context)
    path = tmp_path / "in.parquet"
    frame.write_parquet(path)
    with pytest.raises(InputError, match=r"column 'sir_context' \(sir_context\) holds .* no text for the API"):
        loader.inspect([path], {}, None)


@pytest.mark.parametrize("start", ["x^", "x\x01", "x^2 promo"])
def test_text_that_starts_like_a_compressed_stream_is_read_as_text(tmp_path: Path, monkeypatch, start):
    """polars takes bytes starting `x^` (zlib's 78 5E) for a zlib stream: a first cell `x^2 promo`
    stopped the file with "corrupt deflate stream", in the header, the first row, or any record
    that began a block (found by a review, h7b)."""
    monkeypatch.setattr(loader.csv_blocks, "BLOCK_BYTES", 7)  # about every record starts a block
    path = tmp_path / "x.csv"
    rows = [f"{start}{i},c{i},f,x,d,e" for i in range(20)]
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    frame = load([path], chunk=3)
    assert frame["org_id"].to_list() == [f"{start}{i}" for i in range(20)]
    headed = tmp_path / "h.csv"
    headed.write_text(f"{start}note," + HEADER + "\n" + f"{start},o,c,f,x,d,e\n")
    frame = load([headed])
    assert frame["org_id"].to_list() == ["o"] and loader.csv_blocks.header(headed)[0] == f"{start}note"


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (lambda text: gzip.compress(text, mtime=0), "its content is gzip-compressed, not CSV text; name it .csv.gz"),
        (lambda text: text.decode().encode("utf-16"), "its content is UTF-16 text, not CSV text; save it as UTF-8"),
        (lambda text: b"PK\x03\x04" + text, "its content is a zip archive (an .xlsx workbook?), not CSV text"),
        (lambda text: b"PAR1" + text, "its content is a Parquet file, not CSV text; name it .parquet"),
        (  # a Mac's `._a.csv` beside `a.csv` in an input folder: it had said "missing required column"
            lambda text: b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ",
            "its content is macOS file metadata (an AppleDouble `._` file copied from a Mac), not CSV text; delete it",
        ),
    ],
)
def test_a_csv_whose_content_is_not_text_stops_the_run_saying_what_it_is(tmp_path: Path, content, said):
    """A `.csv` holding gzip (a `.csv.gz` renamed, a download saved compressed): polars read the
    header out of the compressed stream and no row after it, so the run ended 0 rows, exit 0
    (found by a review, h7b)."""
    path = tmp_path / "a.csv"
    path.write_bytes(content((HEADER + "\n" + "o,c,f,x,d,e\n" * 3).encode()))
    with pytest.raises(InputError, match=re.escape(said)):
        load([path])


def test_a_results_file_whose_first_key_starts_like_zlib_is_read_back(tmp_path: Path):
    """`request_key` `x^1` on the first row: the next run over the same results file refused it as
    "cannot be read as an si-ingest results file" (found by a review, h7b)."""
    from .conftest import make_rows, run_cli

    rows = pl.DataFrame(make_rows(3)).with_columns(request_key=pl.Series(["x^1", "x^2", "x^3"]))
    path = tmp_path / "a.csv"
    rows.write_csv(path)
    out = tmp_path / "r.csv"
    for _ in range(2):
        done = run_cli("validate", str(path), "--results", str(out))
        assert done.code == 0, done.stderr
    assert pl.read_csv(out)["row_key"].to_list() == ["x^1", "x^2", "x^3"]


@pytest.mark.parametrize("name", ["Request_Key", "request_key ", "SIR_STATUS", " contact_id"])
def test_a_column_named_like_a_field_but_for_case_or_spaces_stops_the_run(tmp_path: Path, name):
    """`Request_Key` or `sir_status ` had been ignored in silence: the caller's keys unused (two
    rows with one key both sent), a status `Done` sent as the API's default (review h7b)."""
    field = name.strip().lower()
    path = tmp_path / "a.csv"
    names = HEADER.replace("contact_id", name) if field == "contact_id" else f"{HEADER},{name}"
    path.write_text(names + "\n" + "o,c,f,x,d,e" + ("" if field == "contact_id" else ",v") + "\n")
    with pytest.raises(InputError, match=re.escape(f"the header has {name!r}, not '{field}'")):
        load([path])
    assert load([path], columns={field: name})[field].to_list() == ["v" if field != "contact_id" else "c"]


@pytest.mark.parametrize(
    ("rows", "bad_row"),
    [
        (['o,c,f,d,e,Sizes 5" x, 7" y requested'], 1),  # alone in its file, the context last: had been sent cut
        (["o,c,f,d,e,fine"] * 2 + ["", 'o,c,f,d,e,Sizes 5" x, 7" y'] + ["o,c,f,d,e,fine"] * 3, 3),
        (['o,c,f,d,e, "Call me, please"'], 1),  # typed with ", ": a space before the quote
        (['o,c,f,d,"e"x,fine'], 1),  # text after a closing quote
    ],
)
def test_a_quote_inside_a_field_stops_the_run_naming_the_row(tmp_path: Path, rows, bad_row):
    """The record scanner read every quote as one that opens or closes a quoted field, polars only
    one at a field's start: `Sizes 5" x, 7" y` passed the field count as one field and polars
    split it, so the context was sent cut at the comma (exit 0), or the fields shifted into a
    wrong code (found by a review, h7b)."""
    path = tmp_path / "q.csv"
    path.write_text("org_id,contact_id,sir_flag,sir_planned_dt,sir_channel,sir_context\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=rf"data row {bad_row} has a quote inside a field \(`"):
        load([path])


def three_rows(**columns: list[Any]) -> pl.DataFrame:
    """Three rows with placeholder API fields (only the loader reads them), and `columns`."""
    fields = {"org_id": "o", "contact_id": "c", "sir_flag": "f", "sir_planned_dt": "d", "sir_channel": "e"}
    base = {name: [value] * 3 for name, value in fields.items()}
    return pl.DataFrame(base | columns)


def test_quotes_as_csv_writes_them_are_read_whole(tmp_path: Path):
    path = tmp_path / "q.csv"
    frame = three_rows(sir_context=['Sizes 5" x, 7" y', '"quoted"', 'a ""b"" c'])
    frame.write_csv(path)
    assert load([path])["sir_context"].to_list() == frame["sir_context"].to_list()


def test_a_quote_inside_a_header_name_stops_the_run(tmp_path: Path):
    path = tmp_path / "h.csv"
    path.write_text('org_id,contact_id,sir_flag,sir_planned_dt,sir_channel,sir_context,no"te\no,c,f,d,e,x,"y\n')
    with pytest.raises(InputError, match="the header line has a quote inside a name"):
        load([path])


def test_a_header_name_holding_a_line_break_stops_the_run(tmp_path: Path):
    """`...,"note` in the header and `...,n1"` at the end of data row 1: RFC-valid, but the header
    record then swallowed row 1 into its last name, and the run went on without that row, exit 0
    (found by a review, h7b F7). No real header name holds a line break."""
    path = tmp_path / "h.csv"
    header = "org_id,contact_id,sir_flag,sir_planned_dt,sir_channel,sir_context"
    path.write_text(f'{header},"note\no,c,f,d,e,x,n1"\no,c2,f,d,e,x,n2\n')
    with pytest.raises(InputError, match=r"h\.csv: the header line's name 'note.*' holds a line break"):
        load([path])
    from .conftest import run_cli

    done = run_cli("validate", str(path), "--results", str(tmp_path / "r.csv"))
    assert done.code == 2 and "holds a line break" in done.stderr and not (tmp_path / "r.csv").exists()
    # a spreadsheet cell with a line break in a name (Alt+Enter) is a name, and row 1 is read
    path.write_text(f'{header},"planned\n(date, local)"\no,c,f,d,e,x,n1\no,c2,f,d,e,x,n2\n')
    assert load([path]).height == 2


def test_an_input_that_is_a_pipe_stops_the_run_instead_of_waiting_forever(tmp_path: Path):
    """A FIFO named `x.csv`: its header was read, then the data read waited for a writer forever
    (found by a review, h7b). Inside a folder it was already refused."""
    import os

    path = tmp_path / "x.csv"
    os.mkfifo(path)
    with pytest.raises(InputError, match="is not a regular file"):
        loader.discover([path])


def test_a_results_file_inside_an_input_folder_is_refused_from_the_first_night(tmp_path: Path):
    """The first night wrote lib/r.csv; every night after, the folder input read it as an export
    and stopped on "missing required column" (found by a review, h9b)."""
    from .conftest import make_rows, run_cli

    folder = tmp_path / "lib"
    folder.mkdir()
    pl.DataFrame(make_rows(3)).write_csv(folder / "a.csv")
    refused = run_cli("validate", str(folder), "--results", str(folder / "r.csv"))
    assert refused.code == 2 and "is inside the input folder" in refused.stderr, refused.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["a.csv"]


def test_a_row_that_is_not_utf8_is_named_with_the_way_forward(tmp_path: Path, monkeypatch):
    """A spreadsheet's CSV in a Windows code page: polars said only "invalid utf-8 sequence",
    naming no row (left open by session 7). The row is found, in a later block too, counting
    a record whose quoted text spans lines as one row."""
    monkeypatch.setattr(csv_blocks, "BLOCK_BYTES", 4096)
    header = "org_id,contact_id,sir_flag,sir_planned_dt,sir_channel,sir_context\n"
    good = "o,c,f,d,e,plain text\n"
    data = header.encode() + b'o,c,f,d,e,"two\nlines"\n' + good.encode() * 500 + b"o,c,f,d,e,caf\xe9\n" + good.encode()
    path = tmp_path / "x.csv"
    path.write_bytes(data)
    with pytest.raises(InputError, match=r"x\.csv: data row 502 is not UTF-8 text \(`.*caf.*`\); save the file as"):
        load([path])
    from .conftest import run_cli

    done = run_cli("validate", str(path), "--results", str(tmp_path / "r.csv"))
    assert done.code == 2 and "data row 502 is not UTF-8 text" in done.stderr


def test_a_parquet_inputs_unused_columns_are_never_decoded(tmp_path: Path, monkeypatch):
    """An unused 5 KB binary column (an attachment, an embedding) was decoded with every batch:
    1.1 GB for 100k rows instead of 150 MB (found by a review, h11b). Only the mapped columns
    are read, as for a CSV."""
    path = tmp_path / "a.parquet"
    frame = three_rows(sir_context=["x"] * 3, thumbnail=[b"\x00" * 5000] * 3)
    frame.write_parquet(path)
    read: list[list[str]] = []
    chunks = loader._parquet_chunks

    def spy(*args, **kwargs):
        for chunk in chunks(*args, **kwargs):
            read.append(chunk.columns)
            yield chunk

    monkeypatch.setattr(loader, "_parquet_chunks", spy)
    assert load([path])["sir_context"].to_list() == ["x"] * 3
    assert read and all("thumbnail" not in columns for columns in read)


def test_a_batch_of_long_rows_ends_at_its_byte_budget(tmp_path: Path, monkeypatch):
    """Rows of 10 KB made batches of chunk_rows all the same, 500 MB of text each (validate of 50k
    such rows peaked at 1.6 GB; found by a review, h11b). A batch also ends at BATCH_BYTES."""
    monkeypatch.setattr(loader, "BATCH_BYTES", 64 << 10)
    monkeypatch.setattr(csv_blocks, "BLOCK_BYTES", 16 << 10)
    path = tmp_path / "long.csv"
    path.write_text(HEADER + "\n" + "".join(f"o,c,f,{'x' * 1000},d,e\n" for _ in range(300)))
    file = loader.inspect(loader.discover([path]), {}, None)[0]
    sizes = [b.height for b in loader.batches(file, 50_000, None)]
    assert sum(sizes) == 300 and len(sizes) > 3 and max(sizes) <= 100, sizes


def test_a_record_longer_than_any_is_named_as_such_not_as_a_quote(tmp_path: Path, monkeypatch):
    """An unquoted value over MAX_RECORD_BYTES was reported as "opens a quote that never
    closes" in a file with no quote at all (found by a review, h11b)."""
    monkeypatch.setattr(csv_blocks, "MAX_RECORD_BYTES", 64 << 10)
    monkeypatch.setattr(csv_blocks, "BLOCK_BYTES", 16 << 10)
    path = tmp_path / "long.csv"
    path.write_text(HEADER + "\no,c,f,x,d,e\n" + f"o,c,f,{'x' * 100_000},d,e\n")
    with pytest.raises(InputError, match=r"long\.csv: data row 2 runs over 0\.0625 MiB without a line end"):
        load([path])
    path.write_text(HEADER + "\no,c,f,x,d,e\n" + f'o,c,f,"{"x" * 100_000},d,e\n')
    with pytest.raises(InputError, match=r"data row 2 opens a quote that never closes"):
        load([path])


def test_a_parquet_batch_of_long_rows_ends_at_its_byte_budget(tmp_path: Path, monkeypatch):
    """Parquet batches were bounded by rows alone (found by a review, h12): long cells made
    batches of chunk_rows whatever their size. Their size is learnt from a first slice."""
    monkeypatch.setattr(loader, "BATCH_BYTES", 64 << 10)
    path = tmp_path / "long.parquet"
    three_rows(sir_context=["x" * 1000] * 3).select(pl.all().repeat_by(1000).explode()).write_parquet(path)
    file = loader.inspect(loader.discover([path]), {}, None)[0]
    sizes = [b.height for b in loader.batches(file, 50_000, None)]
    assert sum(sizes) == 3000 and sizes[0] == 1024 and max(sizes[1:]) <= 100, sizes
    frame = load([path])
    assert frame["source_row"].to_list() == list(range(1, 3001))
