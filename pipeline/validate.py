"""Batch -> the same batch trimmed, with `status` and `error_code`/`error_message` (polars expressions).

Validation is vectorised: no per-row Python loop decides anything. Row keys are `keys.py`'s;
repeats within a run are found per key partition by the planner (`plan.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

import polars as pl

from .models import API_FIELDS, SIR_CHANNELS, SIR_FLAGS, ErrorCode, Status

if TYPE_CHECKING:
    from polars.expr.whenthen import ChainedThen, Then

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# Seconds 00-59 (strptime would take a leap second :60) and hours 00-23; year 0000 is refused
# below (the API's calendar starts at year 1, and Rust's regex has no lookahead).
DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2} ([01]\d|2[0-3]):[0-5]\d:[0-5]\d$"
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TEXT_FIELDS = (*API_FIELDS, "request_key")
_MAX_SHOWN = 60  # characters of a bad value quoted in an error message


FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def validate(
    batch: pl.DataFrame,
    sir_statuses: Iterable[str],
    *,
    normalize_case: bool = False,
    datetime_formats: Iterable[str] = (),
) -> pl.DataFrame:
    """Trim every field and mark invalid rows with their code and message (`checks`, then
    `with_messages`). The options are `checks`'."""
    statuses = list(sir_statuses)
    checked = checks(batch.lazy(), statuses, normalize_case=normalize_case, datetime_formats=datetime_formats)
    return with_messages(checked.collect(), statuses)


def checks(
    batch: FrameT,
    sir_statuses: Iterable[str],
    *,
    normalize_case: bool = False,
    datetime_formats: Iterable[str] = (),
) -> FrameT:
    """Trim every field and mark invalid rows with their `error_code` and `status` (no message:
    `with_messages` adds it once the frame is collected).

    `normalize_case` reads sir_flag and sir_channel in any letter case; `datetime_formats`
    rewrites a sir_planned_dt written in one of those strftime patterns to the API's format.
    Both happen before the checks (and before the row key is computed from the fields).
    """
    trimmed = batch.with_columns(blank_to_null(pl.col(f)).alias(f) for f in _TEXT_FIELDS)
    if normalize_case:
        trimmed = trimmed.with_columns(pl.col("sir_flag", "sir_channel").str.to_lowercase())
    formats = list(datetime_formats)
    if formats:
        trimmed = trimmed.with_columns(sir_planned_dt=_reformatted(pl.col("sir_planned_dt"), formats))
    code = _first([(failed, pl.lit(err.value)) for failed, err, _ in _checks(list(sir_statuses))], "error_code")
    return trimmed.with_columns(code).with_columns(
        status=pl.when(pl.col("error_code").is_not_null()).then(pl.lit(Status.INVALID.value)).otherwise(None)
    )


def with_messages(checked: pl.DataFrame, sir_statuses: Iterable[str]) -> pl.DataFrame:
    """`checked` (from `checks`) with `error_message` beside `error_code`, built for the invalid
    rows alone: polars evaluates every branch of a when/then chain for every row, and building
    the seven messages for all rows cost as much as the checks themselves (0.15 CPU-us per row,
    bench/PROFILE.md) when almost every row is valid."""
    messages = pl.repeat(None, checked.height, dtype=pl.String, eager=True).alias("error_message")
    if checked.get_column("error_code").null_count() < checked.height:
        invalid = pl.col("error_code").is_not_null()
        message = _first([(failed, text) for failed, _, text in _checks(list(sir_statuses))], "error_message")
        at = checked.select(pl.arg_where(invalid)).to_series()
        messages = messages.scatter(at, checked.filter(invalid).select(message).to_series())
    columns = checked.columns
    after = columns.index("error_code") + 1
    return checked.with_columns(messages).select(*columns[:after], "error_message", *columns[after:])


def _reformatted(dt: pl.Expr, formats: list[str]) -> pl.Expr:
    """The API's format where a cell matches one of `formats` (the first that reads it wins), and
    only where the reading is faithful: written back in the same format it gives the cell again
    (but for zero padding, letter case, spacing and a fraction of zeros), and it holds no fraction
    of a second. chrono reads `23:59:60` as the next day's 00:00:00, and the API's format has no
    fraction: either had been sent altered. Anything else stays as it was, so INVALID_DATETIME."""
    readings = []
    for f in formats:
        parsed = dt.str.strptime(pl.Datetime, f, strict=False)
        faithful = (_plain(parsed.dt.strftime(f)) == _plain(dt)) & (parsed.dt.nanosecond() == 0)
        readings.append(pl.when(faithful).then(parsed.dt.strftime(DATETIME_FORMAT)))
    already = dt.str.contains(DATETIME_PATTERN)
    return pl.when(already).then(dt).otherwise(pl.coalesce(*readings, dt))


def _plain(text: pl.Expr) -> pl.Expr:
    """A date text compared for meaning: lower-cased, spaces collapsed, zero padding and a
    fraction of zeros dropped (`5.4.2026 9:07:03` reads as `05.04.2026 09:07:03`)."""
    text = text.str.to_lowercase().str.replace_all(r"\s+", " ").str.replace_all(r"\.0+(\D|$)", "${1}")
    return text.str.replace_all(r"(^|\D)0+(\d)", "${1}${2}")


def blank_to_null(expr: pl.Expr) -> pl.Expr:
    """Trimmed text; empty or all-blank cells become null."""
    text = expr.cast(pl.String).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


def _checks(sir_statuses: list[str]) -> list[tuple[pl.Expr, ErrorCode, pl.Expr]]:
    """Every check, in the API's own order, as (failed, its code, its message) expressions."""
    missing = ["org_id", "contact_id", "sir_context", "sir_planned_dt"]
    missing_names = pl.concat_str(
        [pl.when(pl.col(f).is_null()).then(pl.lit(f)) for f in missing], separator=", ", ignore_nulls=True
    )
    any_missing = pl.any_horizontal(pl.col(f).is_null() for f in missing)
    dt = pl.col("sir_planned_dt")
    dt_ok = (
        dt.str.contains(DATETIME_PATTERN)
        & ~dt.str.starts_with("0000")
        & dt.str.strptime(pl.Datetime, DATETIME_FORMAT, strict=False).is_not_null()
    )
    org_ok = pl.col("org_id").str.contains(UUID_PATTERN)
    contact_ok = pl.col("contact_id").str.contains(UUID_PATTERN)
    status = pl.col("sir_status")
    status_ok = status.is_null() | status.is_in(sir_statuses)

    checks: list[tuple[pl.Expr, ErrorCode, pl.Expr]] = [
        (any_missing, ErrorCode.MISSING_FIELDS, pl.lit("missing ") + missing_names),
        (
            ~pl.col("sir_flag").is_in(SIR_FLAGS) | pl.col("sir_flag").is_null(),
            ErrorCode.INVALID_FLAG,
            _bad("sir_flag", f"is not one of {', '.join(SIR_FLAGS)}"),
        ),
        (
            ~pl.col("sir_channel").is_in(SIR_CHANNELS) | pl.col("sir_channel").is_null(),
            ErrorCode.INVALID_CHANNEL,
            _bad("sir_channel", f"is not one of {', '.join(SIR_CHANNELS)}"),
        ),
        (
            ~dt_ok,
            ErrorCode.INVALID_DATETIME,
            _bad("sir_planned_dt", "is not a real date and time in the form YYYY-MM-DD HH:MM:SS"),
        ),
        (~org_ok, ErrorCode.INVALID_UUID, _bad("org_id", "is not a UUID (8-4-4-4-12 hex digits)")),
        (~contact_ok, ErrorCode.INVALID_UUID, _bad("contact_id", "is not a UUID (8-4-4-4-12 hex digits)")),
        (~status_ok, ErrorCode.INVALID_STATUS, _bad("sir_status", f"is not one of {', '.join(sir_statuses)}")),
    ]
    return checks


def _first(branches: list[tuple[pl.Expr, pl.Expr]], name: str) -> pl.Expr:
    """`name`: the value of the first branch whose condition holds, else null (one when/then chain)."""
    chain: Then | ChainedThen | None = None
    for failed, value in branches:
        chain = pl.when(failed).then(value) if chain is None else chain.when(failed).then(value)
    assert chain is not None
    return chain.otherwise(None).alias(name)


def _bad(name: str, why: str) -> pl.Expr:
    value = pl.col(name)
    shown = pl.when(value.str.len_chars() > _MAX_SHOWN).then(value.str.slice(0, _MAX_SHOWN) + "...").otherwise(value)
    return (
        pl.when(value.is_null())
        .then(pl.lit(f"missing {name}"))
        .otherwise(pl.lit(f"{name} '") + shown + pl.lit(f"' {why}"))
    )
