"""Spreadsheet formula neutralisation for every CSV the tool writes, and its inverse on re-feed.

A text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return (OWASP's list for
CSV injection) is written with a leading `'`, which spreadsheets show as text instead of
running it. A cell that already starts with `'` gets one more, so the rule is reversible:
the tool's own readers strip exactly one leading `'` from every cell that starts with one.
Only files the tool wrote are read back that way (`written_by_tool`); a user's own `'` in an
export is data. Both directions are single polars expressions over every String column;
numeric columns are left alone (the results' numbers are never negative, and an error file
holds every input column as text).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import polars as pl

from .models import RESULT_COLUMNS

QUOTE = "'"
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# The columns an error file ends with (`si-ingest report --errors`).
ERROR_COLUMNS: tuple[str, ...] = ("status", "error_code", "error_message")
_SPECIAL_FIRST = r"^[=+\-@\t\r']"  # a cell starting with one of TRIGGERS or QUOTE

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def neutralise(frame: FrameT) -> FrameT:
    """Every String cell starting with a trigger or `'` gets a leading `'` (nulls stay null),
    and so does every column name (a header is cells to a spreadsheet too)."""
    text = pl.col(pl.String)
    # An anchored class match, then a prefix where it matched: per 1M results rows 0.08 s (0.16
    # CPU-s), against 0.13 s comparing the first character to a list and 0.46 s for a regex
    # replace (bench/PROFILE.md); the same cells changed (tests/test_safe_csv.py's oracle).
    special = text.str.contains(_SPECIAL_FIRST)
    cells = frame.with_columns(pl.when(special).then(pl.lit(QUOTE) + text).otherwise(text).name.keep())
    return cells.rename(neutralise_name)


def restore(frame: FrameT) -> FrameT:
    """The inverse of `neutralise` for the cells: one leading `'` off every String cell that has
    one. (A header is restored as it is read: `restore_name`.)"""
    return frame.with_columns(pl.col(pl.String).str.strip_prefix(QUOTE))


def neutralise_name(name: str) -> str:
    """A header cell, by the same rule."""
    return QUOTE + name if name.startswith((*TRIGGERS, QUOTE)) else name


def restore_name(name: str) -> str:
    return name.removeprefix(QUOTE)


def written_by_tool(header: Sequence[str]) -> bool:
    """A CSV header of a file the tool wrote: an error file (ends with the error columns) or a
    results file (has every results column)."""
    names = tuple(header)
    return names[-len(ERROR_COLUMNS) :] == ERROR_COLUMNS or set(RESULT_COLUMNS) <= set(names)


def scan_written(path: Path, schema_overrides: Mapping[str, type[pl.DataType]] | None = None) -> pl.LazyFrame:
    """A file the tool wrote: Parquet as stored; a CSV as text (but the columns overridden)
    with the neutralisation undone."""
    if path.name.endswith(".parquet"):
        return pl.scan_parquet(path)
    return restore(pl.scan_csv(path, infer_schema=False, schema_overrides=schema_overrides))
