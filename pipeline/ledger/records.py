"""Ledger records: the state schema, the journal's line format, and the checks on both.

A journal line (format 2) is one compact JSON object, a tab, and the first 16 hex digits of
the SHA-256 of the JSON bytes, then a newline:

    {"q":0,"ledger":"si-ingest","v":2,"lid":"<ledger id>","base":"<snapshot generation>"|null}
    {"q":1,"i":"<row_key>","n":3}                 intent: try number 3 is about to leave
    {"q":2,"k":"<row_key>","s":"created","n":3,"id":456,"h":200,"t":"..."}   outcome
    {"q":3,"k":"<row_key>","s":"created",...,"L":true}   outcome kept from a format 1 ledger

Compaction rewrites the journal as one outcome per row_key (fields may then be null).

`q` numbers the lines from 0: a line lost, added or moved breaks the sequence, which a
per-record checksum alone would not show. Every check here has a vectorised form (polars,
for replay at any size) and a per-line form (Python, for `ledger check` and for naming the
first bad record when the vectorised pass finds one); both accept the same lines.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

import orjson
import polars as pl

from ..keys import sha256_hex
from ..models import Outcome, Status

FORMAT_VERSION = 2
LEDGER_NAME = "si-ingest"
CHECKSUM_HEX = 16
INT64_MAX = 2**63 - 1
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)

# What the ledger knows about one row_key: the results file's outcome columns.
STATE_SCHEMA: dict[str, pl.DataType] = {
    "row_key": pl.String(),
    "status": pl.String(),
    "sir_id": pl.Int64(),
    "error_code": pl.String(),
    "error_message": pl.String(),
    "attempts": pl.Int64(),
    "http_status": pl.Int64(),
    "updated_at": pl.String(),
}
# A decoded journal record: the state columns plus its sequence number, kind and key format.
RECORD_SCHEMA: dict[str, pl.DataType] = {
    "q": pl.Int64(),
    "intent": pl.Boolean(),
    **STATE_SCHEMA,
    "legacy": pl.Boolean(),  # a format 1 key (see keys.py)
}
_JSON_DTYPE = pl.Struct(
    {
        "q": pl.Int64,
        "ledger": pl.String,
        "v": pl.Int64,
        "i": pl.String,
        "k": pl.String,
        "s": pl.String,
        "n": pl.Int64,
        "id": pl.Int64,
        "c": pl.String,
        "m": pl.String,
        "h": pl.Int64,
        "t": pl.String,
        "L": pl.Boolean,
    }
)
# A record's state columns and the short keys they are written under (the one place that maps them).
SHORT_KEYS: tuple[tuple[str, str], ...] = (
    ("row_key", "k"),
    ("status", "s"),
    ("attempts", "n"),
    ("sir_id", "id"),
    ("error_code", "c"),
    ("error_message", "m"),
    ("http_status", "h"),
    ("updated_at", "t"),
    ("legacy", "L"),
)
_OUTCOME_FIELDS = (("sir_id", "id"), ("error_code", "c"), ("error_message", "m"), ("http_status", "h"))
# The compact shape the writer gives a record's fields (orjson or polars' encoder: no spaces).
# Both checks hold a non-header record to it, so they agree on what a record says: a number is
# digits (no sign, fraction, exponent or quotes), a text is a string, a flag is a boolean.
# A quote inside a JSON string is escaped, so `"n":` cannot match inside a value.
_NUMBER, _TEXT, _FLAG = r"[0-9]{1,19}[,}]", r'(null|")', r"(true|false|null)[,}]"
SHAPES: tuple[tuple[str, str, bool], ...] = (  # (field, pattern of its value, required)
    ("q", _NUMBER, True),
    ("n", _NUMBER, True),
    ("id", r"(null|[0-9]{1,19}[,}])", False),
    ("h", r"(null|[0-9]{1,19}[,}])", False),
    ("i", '"', False),
    ("k", '"', False),
    ("s", '"', False),
    ("c", _TEXT, False),
    ("m", _TEXT, False),
    ("t", _TEXT, False),
    ("L", _FLAG, False),
)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def checksum(payload: bytes) -> bytes:
    return hashlib.sha256(payload).hexdigest()[:CHECKSUM_HEX].encode()


def encode(record: dict[str, Any]) -> bytes:
    payload = orjson.dumps(record)
    return payload + b"\t" + checksum(payload) + b"\n"


def header(seq: int, ledger_id: str, base: str | None) -> bytes:
    return encode({"q": seq, "ledger": LEDGER_NAME, "v": FORMAT_VERSION, "lid": ledger_id, "base": base})


def intent(seq: int, row_key: str, attempt: int) -> bytes:
    return encode({"q": seq, "i": row_key, "n": attempt})


def outcome(seq: int, result: Outcome) -> bytes:
    """An outcome line; fields that are None are left out."""
    record: dict[str, Any] = {"q": seq, "k": result.row_key, "s": result.status.value, "n": result.attempts}
    for attr, short in _OUTCOME_FIELDS:
        value = getattr(result, attr)
        if value is not None:
            record[short] = value
    record["t"] = result.updated_at or now_iso()
    return encode(record)


def outcome_lines(state: pl.DataFrame, first_seq: int) -> pl.DataFrame:
    """Outcome lines (one `line` column, newline not included) for a state frame, vectorised."""
    fields = [pl.int_range(first_seq, first_seq + state.height, dtype=pl.Int64).alias("q")]
    fields += [(pl.col(c).fill_null(0) if short == "n" else pl.col(c)).alias(short) for c, short in SHORT_KEYS]
    payload = pl.struct(fields).struct.json_encode()
    framed = state.select(payload.alias("p"))
    return framed.select(line=pl.col("p") + pl.lit("\t") + sha256_hex(pl.col("p")).str.head(CHECKSUM_HEX))


def empty_state() -> pl.DataFrame:
    return pl.DataFrame(schema=STATE_SCHEMA)


def state_frame(outcomes: list[Outcome]) -> pl.DataFrame:
    """The one way to build a state frame from Python outcomes (small lists only: tests, repairs)."""
    return pl.DataFrame(
        {
            "row_key": [o.row_key for o in outcomes],
            "status": [o.status.value for o in outcomes],
            "sir_id": [o.sir_id for o in outcomes],
            "error_code": [o.error_code for o in outcomes],
            "error_message": [o.error_message for o in outcomes],
            "attempts": [o.attempts for o in outcomes],
            "http_status": [o.http_status for o in outcomes],
            "updated_at": [o.updated_at for o in outcomes],
        },
        schema=STATE_SCHEMA,
    )


def to_row(record: dict[str, Any], q: int, *, legacy: bool = False) -> dict[str, Any]:
    """A checked record (the journal's short keys) as a RECORD_SCHEMA row."""
    if record.get("i") is not None:
        return {"q": q, "intent": True, "row_key": record["i"], "attempts": record.get("n"), "legacy": legacy}
    return {
        "q": q,
        "intent": False,
        "row_key": record["k"],
        "status": record["s"],
        "sir_id": record.get("id"),
        "error_code": record.get("c"),
        "error_message": record.get("m"),
        "attempts": record.get("n", 0),
        "http_status": record.get("h"),
        "updated_at": record.get("t"),
        "legacy": legacy or bool(record.get("L")),
    }


def record_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RECORD_SCHEMA)


# ---- vectorised checks (polars) ------------------------------------------------------------


def decode_lines(lines: pl.DataFrame) -> pl.DataFrame:
    """Check and decode a batch of lines; adds `ok` (bool) and the record columns.

    Raises polars errors on JSON that cannot be decoded; the caller then names the line with
    the per-line check.
    """
    line = pl.col("line")
    payload = line.str.head(-(CHECKSUM_HEX + 1))
    sums_ok = (
        line.is_not_null()
        & (line.str.len_chars() > CHECKSUM_HEX + 1)
        & (line.str.slice(-(CHECKSUM_HEX + 1), 1) == "\t")
        & (sha256_hex(payload).str.head(CHECKSUM_HEX) == line.str.tail(CHECKSUM_HEX))
    )
    checked = lines.with_columns(sums_ok=sums_ok.fill_null(False))
    good = checked.filter(pl.col("sums_ok"))
    decoded = good.select(
        "pos",
        pl.col("line").str.head(-(CHECKSUM_HEX + 1)).alias("payload"),
        pl.col("line").str.head(-(CHECKSUM_HEX + 1)).str.json_decode(_JSON_DTYPE).alias("r"),
    ).unnest("r")
    pos = pl.col("pos").cast(pl.Int64)
    is_header = (pl.col("ledger") == LEDGER_NAME) & (pl.col("v") == FORMAT_VERSION)
    text = pl.col("payload")
    shaped = pl.all_horizontal(
        (text.str.contains(f'"{name}":{value}') if required else
         ~text.str.contains(f'"{name}":', literal=True) | text.str.contains(f'"{name}":{value}'))
        for name, value, required in SHAPES
    )  # fmt: skip
    in_range = (  # digits beyond int64 decode to null
        pl.col("n").is_not_null()
        & (pl.col("id").is_not_null() | ~text.str.contains(r'"id":[0-9]'))
        & (pl.col("h").is_not_null() | ~text.str.contains(r'"h":[0-9]'))
    )
    keyed = pl.col("k").is_not_null() | pl.col("i").is_not_null()
    is_intent = pl.col("i").is_not_null() & ~text.str.contains_any(['"k":', '"s":', '"L":'])
    is_outcome = pl.col("k").is_not_null() & ~text.str.contains('"i":', literal=True) & pl.col("s").is_in(STATUSES)
    header_free = ~text.str.contains_any(['"ledger":', '"v":', '"lid":', '"base":'])
    valid = (pl.col("q") == pos) & pl.when(pos == 0).then(is_header).otherwise(
        (is_intent | is_outcome) & keyed & shaped & in_range & header_free
    )
    columns = {column: pl.col(short) for column, short in SHORT_KEYS}
    columns |= {"row_key": pl.coalesce("i", "k"), "legacy": pl.col("L").fill_null(False)}
    records = decoded.select(
        "pos", ok=valid.fill_null(False), q=pl.col("q"), intent=is_intent.fill_null(False), **columns
    )
    joined = checked.select("pos", "sums_ok").join(records, on="pos", how="left", maintain_order="left")
    return joined.with_columns(ok=pl.col("sums_ok") & pl.col("ok").fill_null(False)).drop("sums_ok")


# ---- per-line checks (Python) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineVerdict:
    """What the per-line check found in one journal line."""

    pos: int
    record: dict[str, Any] | None  # the decoded record when the line is sound
    problem: str | None  # why it is not
    row_key: str | None = None  # the key the line seems to concern, when it can be read


def check_line(raw: bytes, pos: int, expected: int | None = None) -> LineVerdict:
    """Check one journal line (without its newline), exactly as `decode_lines` does.

    `expected` is the sequence number the line should carry (default: its position).
    """
    raw = raw.removesuffix(b"\r")  # as polars' reader does
    payload, sep, crc = raw.rpartition(b"\t")
    if not sep or len(crc) != CHECKSUM_HEX or checksum(payload) != crc:
        return LineVerdict(pos, None, "checksum mismatch (the bytes were altered)", _guess_key(raw))
    try:
        record = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return LineVerdict(pos, None, "not a JSON record", _guess_key(raw))
    if not isinstance(record, dict):
        return LineVerdict(pos, None, "not a JSON object", None)
    key = record.get("i") if record.get("i") is not None else record.get("k")
    key = key if isinstance(key, str) else None
    problem = _record_problem(record, pos, pos if expected is None else expected)
    if problem is None and pos > 0:
        problem = _shape_problem(payload.decode("utf-8", "replace"))
    return LineVerdict(pos, None if problem else record, problem, key)


def _record_problem(record: dict[str, Any], pos: int, expected: int) -> str | None:
    q = record.get("q")
    if not _is_int(q) or q != expected:
        return f"out of sequence (record number {q!r} where {expected} was expected: a record was lost or added)"
    if pos == 0:
        if record.get("ledger") != LEDGER_NAME:
            return "not an si-ingest journal header"
        if record.get("v") != FORMAT_VERSION:
            return f"journal format version {record.get('v')!r} is not supported by this release"
        return None
    if "ledger" in record:
        return "a second header in the middle of the journal"
    n = record.get("n")
    if not _is_int(n) or not 0 <= n <= INT64_MAX:
        return f"attempts {n!r} is not a whole number"
    if record.get("i") is not None:
        ok = isinstance(record["i"], str) and "k" not in record and "s" not in record and "L" not in record
        return None if ok else "malformed intent record"
    if "i" in record:
        return "malformed outcome record"
    if not isinstance(record.get("k"), str):
        return "record without a row_key"
    if record.get("s") not in STATUSES:
        return f"unknown status {record.get('s')!r}"
    for short, kind in (("id", int), ("h", int), ("c", str), ("m", str), ("t", str), ("L", bool)):
        value = record.get(short)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            return f"field {short!r} has the wrong type ({type(value).__name__})"
    for short, what in (("id", "sir_id"), ("h", "http status")):
        number = record.get(short)
        if number is not None and not 0 <= number <= INT64_MAX:
            return f"{what} {number} is out of range"
    return None


def _shape_problem(text: str) -> str | None:
    """The first field not in the writer's compact shape (see SHAPES), as the vectorised check sees it."""
    for name, value, required in SHAPES:
        present = f'"{name}":' in text
        if (required or present) and not re.search(f'"{name}":{value}', text):
            return f"field {name!r} is not written as si-ingest writes it"
    if any(f'"{name}":' in text for name in ("ledger", "v", "lid", "base")):
        return "a header field in a record"
    return None


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _guess_key(raw: bytes) -> str | None:
    """The row_key a damaged line seems to carry, when its `"i"`/`"k"` field is still readable."""
    text = raw.decode("utf-8", "replace")
    for tag in ('"i":"', '"k":"'):
        start = text.find(tag)
        if start >= 0:
            end = text.find('"', start + len(tag))
            if end > start + len(tag):
                return text[start + len(tag) : end]
    return None
