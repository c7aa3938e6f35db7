"""Input files -> batches of rows as string DataFrames (polars), in bounded memory.

Every CSV column is read as a string (no type inference), so leading zeros, `NA` and numeric
ids survive. A batch carries `source` (file name) and `source_row` (1-based data row) beside the
API fields, renamed from the input's own column names by the config's `[columns]` table.
Memory is bounded by `chunk_rows` and the CSV block size, not by the file: CSV streams through
`csv_blocks` (record-aligned blocks, field counts checked), Parquet through `slice()`
(FIELD-NOTES: ~150 MiB flat). Parquet columns typed Date or Datetime become the API's
`YYYY-MM-DD HH:MM:SS` (a Date at midnight); a time with a fraction of a second or a time zone
is kept as text and so fails validation (INVALID_DATETIME) rather than being guessed at;
numbers become their text. A CSV the tool wrote (an error file or a results file, see
`safe_csv`) has its formula neutralisation undone as it is read, header included.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from . import csv_blocks, safe_csv
from .errors import InputError, reason_of
from .models import API_FIELDS, RESULT_COLUMNS, ErrorCode, Status
from .validate import blank_to_null

REQUIRED_FIELDS: tuple[str, ...] = ("org_id", "contact_id", "sir_flag", "sir_context", "sir_planned_dt", "sir_channel")
LOADED_FIELDS: tuple[str, ...] = (*API_FIELDS, "request_key")
SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet")
DATETIME_TEXT = "%Y-%m-%d %H:%M:%S"
ROW_INDEX = "__si_ingest_row"  # the data row number while reading (no clash with an input column)
# A batch ends at `chunk_rows` rows or at this much CSV text, whichever comes first: a 50k-row
# batch of 10 KB cells (a request_key, a context) had held 500 MB of text in every copy the
# planner makes of it, and validate of 50k such rows peaked at 1.6 GB (found by a review, h11b).
# An export's usual rows (~170 bytes) make batches of chunk_rows long before this.
BATCH_BYTES = 32 << 20


@dataclass(frozen=True, slots=True)
class InputFile:
    path: Path
    # API field -> the file's column holding it (fields the file lacks are absent)
    columns: Mapping[str, str]
    # every column of the file, in order
    header: tuple[str, ...] = ()
    # a CSV the tool wrote: its cells (and header) are read back with the neutralisation undone
    written_by_tool: bool = False
    # constants for fields the file lacks or leaves empty (config [defaults])
    defaults: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def is_parquet(self) -> bool:
        return self.path.name.endswith(".parquet")


def discover(inputs: list[Path]) -> list[Path]:
    """Expand folders (their .csv, .csv.gz and .parquet files, sorted) and check every path."""
    found: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files = _folder_inputs(path)
            if not files:
                raise InputError(f"input folder {path} has no .csv, .csv.gz or .parquet file")
            found.extend(files)
        elif not path.exists():
            raise InputError(f"input file {path} does not exist")
        elif not _has_suffix(path):
            raise InputError(f"input file {path} is not .csv, .csv.gz or .parquet")
        elif not path.is_file():  # a FIFO: read once for its header, the data read then waited forever
            raise InputError(
                f"input file {path} is not a regular file (a pipe?): the tool reads each input more than once;"
                " save it to a file first"
            )
        else:
            found.append(path)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def inspect(
    paths: list[Path],
    columns: Mapping[str, str],
    default_org_id: str | None,
    defaults: Callable[[str], Mapping[str, str]] | None = None,
) -> list[InputFile]:
    """Read each file's header and map its columns; a missing required column stops the run.

    `defaults(file_name)` gives the constants configured for a file ([defaults]): a column
    the file lacks is then not missing."""
    files = []
    for path in paths:
        described = describe(path)
        header = described.header
        constants = dict(defaults(path.name)) if defaults is not None else {}
        mapped: dict[str, str] = {}
        for api_field in LOADED_FIELDS:
            wanted = columns.get(api_field, api_field)
            if wanted in header:
                mapped[api_field] = wanted
            elif api_field in columns:
                raise InputError(f"{path}: no column '{wanted}' (mapped to {api_field} by [columns])")
            elif near := [n for n in header if n.strip().casefold() == api_field and n not in columns.values()]:
                # `Request_Key` or `sir_status `: meant as the field, and an optional one had been
                # ignored in silence (the caller's keys unused, a status sent as the default)
                raise InputError(
                    f"{path}: the header has {near[0]!r}, not '{api_field}'; rename the column, or map it in"
                    f' [columns] ({api_field} = "{near[0]}")'
                )
            elif api_field in constants:
                continue
            elif api_field in REQUIRED_FIELDS and not (api_field == "org_id" and default_org_id):
                hint = " (or set ZYNTRO_ORG_ID for a default org)" if api_field == "org_id" else ""
                raise InputError(f"{path}: missing required column '{wanted}'{hint}")
        if path.name.endswith(".parquet"):
            _refuse_untextual(path, mapped)
        files.append(
            InputFile(
                path=path,
                columns=mapped,
                header=header,
                written_by_tool=described.written_by_tool,
                defaults=constants,
            )
        )
    return files


def _refuse_untextual(path: Path, mapped: Mapping[str, str]) -> None:
    """A Parquet column whose values have no text the API could take (nested, binary, a
    duration) stops the run, naming it: a struct had been sent as polars' own rendering
    (`{1,"x"}`), and a list or a duration had stopped the run with polars' words, no column named."""
    with _reading(path):
        schema = pl.read_parquet_schema(path)
    for api_field, column in mapped.items():
        dtype = schema[column]
        if dtype.is_nested() or dtype in (pl.Binary, pl.Duration, pl.Object):
            raise InputError(
                f"{path}: column '{column}' ({api_field}) holds {dtype}, which has no text for the API;"
                " export it as text"
            )


def describe(path: Path) -> InputFile:
    """A file's header alone (no column mapped): what `raw_batches` needs."""
    header, written = _header(path)
    return InputFile(path=path, columns={}, header=tuple(header), written_by_tool=written)


def batches(file: InputFile, chunk_rows: int, default_org_id: str | None) -> Iterator[pl.DataFrame]:
    """Yield the file's rows as DataFrames of `source`, `source_row` and every loaded field (strings)."""
    loaded = sorted(set(file.columns.values()), key=file.header.index)
    with _reading(file.path):
        # only the mapped columns, Parquet too: an unused 5 KB binary column had been decoded with
        # every batch, 1.1 GB for 100k rows (found by a review, h11b)
        chunks = _parquet_chunks(file, chunk_rows, loaded) if file.is_parquet else _csv_chunks(file, chunk_rows, loaded)
        for chunk in chunks:
            yield _shape(chunk, file, default_org_id)


def raw_batches(file: InputFile, chunk_rows: int) -> Iterator[pl.DataFrame]:
    """Every column of the file as stored (a CSV's as text), plus `ROW_INDEX` (Int64), in
    batches of `chunk_rows`: the rows as the user wrote them, for the error file."""
    with _reading(file.path):
        chunks = _parquet_chunks(file, chunk_rows) if file.is_parquet else _csv_chunks(file, chunk_rows, file.header)
        for chunk in chunks:
            yield chunk.with_columns(pl.col(ROW_INDEX).cast(pl.Int64))


def _parquet_chunks(file: InputFile, chunk_rows: int, columns: Sequence[str] | None = None) -> Iterator[pl.DataFrame]:
    """Every column (or `columns`), plus `ROW_INDEX`, a slice of `chunk_rows` at a time."""
    lf = pl.scan_parquet(file.path)
    lf = (lf.select(columns) if columns is not None else lf).with_row_index(ROW_INDEX, offset=1)
    total = lf.select(pl.len()).collect().item()
    offset, step = 0, min(chunk_rows, 1024)  # a first slice to learn the rows' size: BATCH_BYTES holds here too
    while offset < total:
        frame = lf.slice(offset, step).collect()
        yield frame
        offset += frame.height
        per_row = frame.estimated_size() / max(frame.height, 1)
        step = max(1, min(chunk_rows, int(BATCH_BYTES / max(per_row, 1.0))))


def _csv_chunks(file: InputFile, chunk_rows: int, columns: Sequence[str]) -> Iterator[pl.DataFrame]:
    """Parse only `columns` (in file order), block by block, then cut to `chunk_rows`."""
    wanted = [file.header.index(column) for column in columns]
    names = list(columns)
    pending: list[pl.DataFrame] = []
    held = held_bytes = 0
    for block in csv_blocks.blocks(file.path, len(file.header)):
        try:
            frame = csv_blocks.parse(
                block.data, len(file.header), columns=wanted, infer_schema=False, raise_if_empty=False
            )
        except pl.exceptions.ComputeError:
            if (found := csv_blocks.not_utf8(block)) is None:
                raise
            row, around = found
            raise InputError(
                f"{file.path}: data row {row} is not UTF-8 text (`{around}`); {csv_blocks.SAVE_AS_UTF8}"
            ) from None
        frame = frame.rename(dict(zip(frame.columns, names, strict=True)))
        if file.written_by_tool:
            frame = safe_csv.restore(frame)
        rows = pl.int_range(block.first_row, block.first_row + frame.height, dtype=pl.Int64)
        pending.append(frame.with_columns(rows.alias(ROW_INDEX)))
        held += frame.height
        held_bytes += len(block.data)
        if held < chunk_rows and held_bytes >= BATCH_BYTES:  # long rows: a batch is bounded in bytes too
            yield pl.concat(pending)
            pending, held, held_bytes = [], 0, 0
        elif held >= chunk_rows:  # whole batches of chunk_rows; the rest waits for the next block
            joined = pl.concat(pending)
            whole = held - held % chunk_rows
            for offset in range(0, whole, chunk_rows):
                yield joined.slice(offset, chunk_rows)
            pending, held, held_bytes = [joined.slice(whole)], held - whole, 0
    if held:
        yield pl.concat(pending)


def _shape(chunk: pl.DataFrame, file: InputFile, default_org_id: str | None) -> pl.DataFrame:
    exprs: list[pl.Expr] = [
        pl.lit(file.name).alias("source"),
        pl.lit(str(file.path.resolve())).alias("source_path"),
        pl.col(ROW_INDEX).cast(pl.Int64).alias("source_row"),
    ]
    schema = chunk.schema
    for api_field in LOADED_FIELDS:
        column = file.columns.get(api_field)
        expr = pl.lit(None, dtype=pl.String) if column is None else as_text(column, schema[column])
        if api_field == "org_id" and default_org_id:
            expr = pl.coalesce(blank_to_null(expr), pl.lit(default_org_id))
        elif api_field in file.defaults:
            expr = pl.coalesce(blank_to_null(expr), pl.lit(file.defaults[api_field]))
        exprs.append(expr.alias(api_field))
    return chunk.select(exprs)


def as_text(column: str, dtype: pl.DataType) -> pl.Expr:
    """A column as the API's text; dates and times only where their meaning is unambiguous."""
    value = pl.col(column)
    if dtype == pl.Date:
        return value.cast(pl.Datetime).dt.strftime(DATETIME_TEXT)
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        whole = value.dt.truncate("1s") == value
        return pl.when(whole).then(value.dt.strftime(DATETIME_TEXT)).otherwise(value.cast(pl.String))
    return value.cast(pl.String)


def _header(path: Path) -> tuple[list[str], bool]:
    """The file's column names, and whether it is a CSV the tool wrote (names then restored)."""
    with _reading(path):
        if path.name.endswith(".parquet"):
            return pl.scan_parquet(path).collect_schema().names(), False
        names = csv_blocks.header(path)
        if not safe_csv.written_by_tool(names) or not _verdicts_are_ours(path, names):
            return names, False
    restored = [safe_csv.restore_name(n) for n in names]
    if len(set(restored)) < len(restored):
        raise InputError(f"{path}: read back as an si-ingest file, its header names a column twice; rename the copies")
    return restored, True


_OUR_CODE = re.compile(r"HTTP_\d{3}|" + "|".join(code.value for code in ErrorCode))


def _verdicts_are_ours(path: Path, names: list[str]) -> bool:
    """A header ending in the error file's columns is the tool's error file only if every row's
    `status` and `error_code` are the tool's own: a user's export that happened to end in
    `status,error_code,error_message` had been read as one, and one leading `'` taken off every
    cell (`'Tis the season` sent as `Tis the season`). A results file (every results column)
    is taken by its header alone."""
    if set(RESULT_COLUMNS) <= set(names):
        return True
    statuses = [status.value for status in Status]
    for batch in written_batches(path, ["status", "error_code"], 200_000):
        code = pl.col("error_code")
        ours = pl.col("status").is_in(statuses) & (code.is_null() | code.str.contains(f"^(?:{_OUR_CODE.pattern})$"))
        if not batch.select(ours.all()).item():
            return False
    return True


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """polars and OS errors while reading `path` -> one InputError naming it."""
    try:
        yield
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{path}: cannot be read: {reason_of(exc)}") from exc
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot be read: {reason_of(exc)}") from exc


def _has_suffix(path: Path) -> bool:
    return any(path.name.endswith(s) for s in SUFFIXES)


def _folder_inputs(folder: Path) -> list[Path]:
    """The inputs of a folder, sorted. An entry that looks like one but would not be read stops
    the run (InputError): a suffix in another case (`b.CSV`, as Windows exports often are) or a
    link to nothing (a share not mounted) had been skipped without a word, their rows silently
    missing."""
    files = []
    for entry in sorted(folder.iterdir()):
        if not any(entry.name.lower().endswith(s) for s in SUFFIXES):
            continue
        if not _has_suffix(entry):
            raise InputError(
                f"input folder {folder} holds {entry.name}, which is not read (suffixes are .csv, .csv.gz and"
                " .parquet, in lower case): rename it, or move it out of the folder"
            )
        if not entry.is_file():
            what = "a link to nothing (a share not mounted?)" if entry.is_symlink() else "not a file"
            raise InputError(f"input folder {folder} holds {entry.name}, which is {what}: fix it, or move it out")
        files.append(entry)
    return files


def written_batches(path: Path, columns: Sequence[str], chunk_rows: int) -> Iterator[pl.DataFrame]:
    """`columns` of a file the tool wrote (a results file), batch by batch in bounded memory.

    A CSV is read block by block (csv_blocks) with its neutralisation undone, its cells as text;
    never `pl.scan_csv`, whose streaming read held ~290 MB for a 5M-row results file whatever was
    selected. A Parquet file is read in slices, as stored. A column the file lacks raises
    InputError; so does a CSV record with the wrong field count.
    """
    header = written_header(path)
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(f"{path} has no column {missing[0]!r}")
    file = InputFile(path, {}, header, written_by_tool=True)
    chunks = _parquet_chunks(file, chunk_rows, columns) if file.is_parquet else _csv_chunks(file, chunk_rows, columns)
    for chunk in chunks:
        yield chunk.select(columns)


def written_header(path: Path) -> tuple[str, ...]:
    """The column names of a file the tool wrote (a CSV's neutralised names restored)."""
    if path.name.endswith(".parquet"):
        return tuple(pl.scan_parquet(path).collect_schema().names())
    return tuple(safe_csv.restore_name(name) for name in csv_blocks.header(path))


def count_written(path: Path, column: str, values: Sequence[str]) -> int:
    """Rows of a file the tool wrote whose `column` is one of `values` (`written_batches`)."""
    return sum(
        int(batch.select(pl.col(column).cast(pl.String).is_in(values).sum()).item())
        for batch in written_batches(path, [column], WRITTEN_ROWS)
    )


WRITTEN_ROWS = 500_000  # rows per batch of a file the tool wrote, read back (a few columns each)
