"""Input files -> batches of rows as string DataFrames (polars), in bounded memory.

Every column is read as a string (no type inference), so leading zeros, `NA` and numeric ids
survive. A batch carries `source` (file name) and `source_row` (1-based data row) beside the
API fields, renamed from the input's own column names by the config's `[columns]` table.
Memory is bounded by `chunk_rows`, not by the file: CSV streams through
`scan_csv().collect_batches()`, Parquet through `slice()` (FIELD-NOTES: ~150 MiB flat).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from .errors import InputError
from .models import API_FIELDS
from .validate import blank_to_null

REQUIRED_FIELDS: tuple[str, ...] = ("org_id", "contact_id", "sir_flag", "sir_context", "sir_planned_dt", "sir_channel")
LOADED_FIELDS: tuple[str, ...] = (*API_FIELDS, "request_key")
SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet")


@dataclass(frozen=True, slots=True)
class InputFile:
    path: Path
    # API field -> the file's column holding it (fields the file lacks are absent)
    columns: Mapping[str, str]

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
            files = sorted(p for p in path.iterdir() if p.is_file() and _has_suffix(p))
            if not files:
                raise InputError(f"input folder {path} has no .csv, .csv.gz or .parquet file")
            found.extend(files)
        elif not path.exists():
            raise InputError(f"input file {path} does not exist")
        elif not _has_suffix(path):
            raise InputError(f"input file {path} is not .csv, .csv.gz or .parquet")
        else:
            found.append(path)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def inspect(paths: list[Path], columns: Mapping[str, str], default_org_id: str | None) -> list[InputFile]:
    """Read each file's header and map its columns; a missing required column stops the run."""
    files = []
    for path in paths:
        header = _header(path)
        mapped: dict[str, str] = {}
        for api_field in LOADED_FIELDS:
            wanted = columns.get(api_field, api_field)
            if wanted in header:
                mapped[api_field] = wanted
            elif api_field in columns:
                raise InputError(f"{path}: no column '{wanted}' (mapped to {api_field} by [columns])")
            elif api_field in REQUIRED_FIELDS and not (api_field == "org_id" and default_org_id):
                hint = " (or set ZYNTRO_ORG_ID for a default org)" if api_field == "org_id" else ""
                raise InputError(f"{path}: missing required column '{wanted}'{hint}")
        files.append(InputFile(path=path, columns=mapped))
    return files


def batches(file: InputFile, chunk_rows: int, default_org_id: str | None) -> Iterator[pl.DataFrame]:
    """Yield the file's rows as DataFrames of `source`, `source_row` and every loaded field (strings)."""
    try:
        if file.is_parquet:
            lf = pl.scan_parquet(file.path).with_row_index("source_row", offset=1)
            total = lf.select(pl.len()).collect().item()
            chunks: Iterator[pl.DataFrame] = (
                lf.slice(offset, chunk_rows).collect() for offset in range(0, total, chunk_rows)
            )
        else:
            lf = pl.scan_csv(file.path, infer_schema=False, row_index_name="source_row", row_index_offset=1)
            chunks = lf.collect_batches(chunk_size=chunk_rows)
        for chunk in chunks:
            yield _shape(chunk, file, default_org_id)
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{file.path}: cannot be read: {_first_line(exc)}") from exc
    except OSError as exc:
        raise InputError(f"{file.path}: cannot be read: {exc.strerror or exc}") from exc


def _shape(chunk: pl.DataFrame, file: InputFile, default_org_id: str | None) -> pl.DataFrame:
    exprs: list[pl.Expr] = [pl.lit(file.name).alias("source"), pl.col("source_row").cast(pl.Int64)]
    schema = chunk.schema
    for api_field in LOADED_FIELDS:
        column = file.columns.get(api_field)
        if column is None:
            expr = pl.lit(None, dtype=pl.String)
        elif schema[column] == pl.Datetime or schema[column] == pl.Date:
            expr = pl.col(column).dt.strftime("%Y-%m-%d %H:%M:%S")
        else:
            expr = pl.col(column).cast(pl.String)
        if api_field == "org_id" and default_org_id:
            expr = pl.coalesce(blank_to_null(expr), pl.lit(default_org_id))
        exprs.append(expr.alias(api_field))
    return chunk.select(exprs)


def _header(path: Path) -> list[str]:
    try:
        if path.name.endswith(".parquet"):
            return pl.scan_parquet(path).collect_schema().names()
        if path.stat().st_size == 0:
            raise InputError(f"{path}: the file is empty (no header line)")
        return pl.scan_csv(path, infer_schema=False, n_rows=0).collect_schema().names()
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{path}: cannot be read: {_first_line(exc)}") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {exc.strerror or exc}") from exc


def _has_suffix(path: Path) -> bool:
    return any(path.name.endswith(s) for s in SUFFIXES)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
