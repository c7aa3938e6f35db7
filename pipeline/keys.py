"""Row identity: canonical payload -> stable `row_key`, and its 64-bit partition hash `kp`.

A row's key is its `request_key` (trimmed) where given, else the first 32 hex digits of
SHA-256 over its canonical payload: the API fields trimmed, `org_id` and `contact_id`
lower-cased (UUIDs are case-insensitive), an empty `sir_status` read as the API's default
`Pending`, joined with U+001F. SHA-256 because keys live in ledgers for years: it is a
standard anyone can recompute (`hashlib.sha256`), and polars-hash computes it vectorised
(5.9M strings/s here) with no per-row Python. polars' own `hash()` is not stable across
versions, so it is never used for anything stored.

`kp` is xxh3-64 of the row_key: it spreads keys evenly over the ledger's partitions
(`ledger.partition`). It is stored for pruning but always checked against the row_key.

Format 1 ledgers (si-ingest 0.1) keyed rows by blake2b-128 of the payload trimmed but not
lower-cased. `legacy_keys` recomputes that key (with the UUIDs as given, lower- and
upper-cased) so an upgraded ledger still recognises the rows it recorded. polars-hash has no
blake2b, so this one step runs hashlib per row, and only while a ledger holds format 1 records.
"""

from __future__ import annotations

import hashlib
from typing import cast

import polars as pl
import polars_hash  # noqa: F401 - registers the .chash / .nchash expression namespaces used below

from .models import API_FIELDS

KEY_FIELDS: tuple[str, ...] = API_FIELDS
UUID_FIELDS: tuple[str, ...] = ("org_id", "contact_id")
KEY_SEPARATOR = "\x1f"
DEFAULT_SIR_STATUS = "Pending"  # the API's documented default for an absent sir_status
KEY_HEX_DIGITS = 32


def sha256_hex(expr: pl.Expr) -> pl.Expr:
    """Hex SHA-256 of a string expression (polars-hash; equal to hashlib.sha256(...).hexdigest())."""
    return cast(pl.Expr, expr.chash.sha2_256())  # type: ignore[attr-defined]  # namespace registered at import


def xxh3_64(expr: pl.Expr) -> pl.Expr:
    """xxh3-64 of a string expression as UInt64 (polars-hash)."""
    return cast(pl.Expr, expr.nchash.xxh3_64())  # type: ignore[attr-defined]  # namespace registered at import


def canonical(field: str) -> pl.Expr:
    """The field as hashed: trimmed (the validator trims), UUIDs lower-cased, defaults filled."""
    expr = pl.col(field)
    if field in UUID_FIELDS:
        expr = expr.str.to_lowercase()
    if field == "sir_status":
        expr = expr.fill_null(DEFAULT_SIR_STATUS)
    return expr.fill_null("")


def row_key() -> pl.Expr:
    """`request_key` where given, else the payload hash (columns must already be trimmed)."""
    text = pl.concat_str([canonical(f) for f in KEY_FIELDS], separator=KEY_SEPARATOR)
    digest = sha256_hex(text).str.head(KEY_HEX_DIGITS)
    return pl.coalesce(pl.col("request_key"), digest).alias("row_key")


def partition_hash(column: str = "row_key") -> pl.Expr:
    """xxh3-64 of a key: where the key lives among the ledger's partitions."""
    return xxh3_64(pl.col(column)).alias("kp")


def legacy_keys(valid: pl.DataFrame) -> pl.DataFrame:
    """(order, row_key) for every key si-ingest 0.1 may have given these rows.

    0.1 hashed the UUIDs as the export spelled them; a re-export may spell them otherwise, so
    each of org_id and contact_id is tried as given, lower- and upper-cased (distinct texts only).
    """
    texts = []
    for org_case in _CASES:
        for contact_case in _CASES:
            fields = [_case(f, {"org_id": org_case, "contact_id": contact_case}.get(f)) for f in KEY_FIELDS]
            texts.append(
                valid.select("order", "request_key", pl.concat_str(fields, separator=KEY_SEPARATOR).alias("t"))
            )
    variants = pl.concat(texts).unique(["order", "t"], maintain_order=True)
    hashed = pl.Series("h", [_blake2b(t) for t in variants["t"]], dtype=pl.String)
    return variants.select("order", row_key=pl.coalesce(pl.col("request_key"), hashed))


_CASES = ("as_given", "lower", "upper")


def _case(field: str, case: str | None) -> pl.Expr:
    expr = pl.col(field)
    if case == "lower":
        expr = expr.str.to_lowercase()
    elif case == "upper":
        expr = expr.str.to_uppercase()
    return expr.fill_null("")


def _blake2b(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
