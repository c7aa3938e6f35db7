"""Property-based tests (hypothesis): the validator, the answer classifier, the row keys."""

from __future__ import annotations

import re
import string
from datetime import datetime

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.answers import Classifier
from pipeline.errors import AbortError, RequestError
from pipeline.keys import row_key
from pipeline.models import SIR_CHANNELS, SIR_FLAGS, Outcome, Status
from pipeline.validate import validate

from .test_validate import GOOD, frame

UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
SETTINGS = settings(max_examples=150, deadline=None)


def strip(value: str | None) -> str | None:
    """Trimming as the validator does it (polars strip_chars: Unicode whitespace)."""
    if value is None:
        return None
    text = pl.Series([value], dtype=pl.String).str.strip_chars()[0]
    return text or None


def reference(field: str, value: str | None) -> str | None:
    """A plain predicate per field: the error code the row should get, or None."""
    text = strip(value)
    if field in ("org_id", "contact_id", "sir_context", "sir_planned_dt") and text is None:
        return "MISSING_FIELDS"
    if field == "sir_flag":
        return None if text in SIR_FLAGS else "INVALID_FLAG"
    if field == "sir_channel":
        return None if text in SIR_CHANNELS else "INVALID_CHANNEL"
    if field == "sir_planned_dt":
        assert text is not None
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}", text):
            return "INVALID_DATETIME"
        try:
            datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return "INVALID_DATETIME"
        return None
    if field in ("org_id", "contact_id"):
        return None if text is not None and UUID.fullmatch(text) else "INVALID_UUID"
    if field == "sir_status":
        return None if text in (None, "Pending") else "INVALID_STATUS"
    return None


def near(valid: list[str]) -> st.SearchStrategy[str | None]:
    """Arbitrary text, valid values, and valid values slightly damaged or padded."""
    base = st.sampled_from(valid)
    padded = st.tuples(st.sampled_from(["", " ", "\t", "\u00a0", "\n"]), base, st.sampled_from(["", " ", "\r"]))
    mutated = st.tuples(base, st.integers(0, 40), st.characters(codec="utf-8")).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]
    )
    return st.one_of(st.none(), st.text(max_size=40), base, padded.map("".join), mutated)


DATES = ["2026-04-05 09:00:00", "2028-02-29 23:59:59", "0001-01-01 00:00:00", "2026-02-28 00:00:00"]
UUIDS = ["a1b2c3d4-e5f6-7890-abcd-ef1234567890", "A1B2C3D4-E5F6-7890-ABCD-EF1234567890"]
FIELDS = {
    "sir_flag": near(list(SIR_FLAGS)),
    "sir_channel": near(list(SIR_CHANNELS)),
    "sir_planned_dt": near(DATES),
    "contact_id": near(UUIDS),
    "org_id": near(UUIDS),
    "sir_status": near(["Pending"]),
}


@SETTINGS
@given(st.sampled_from(sorted(FIELDS)).flatmap(lambda f: st.tuples(st.just(f), FIELDS[f])))
def test_the_validator_agrees_with_a_plain_predicate_per_field(case):
    field, value = case
    out = validate(frame({field: value}), ["Pending"])
    assert out["error_code"][0] == reference(field, value), (field, value)


HEADERS = st.dictionaries(st.sampled_from(["Retry-After", "Content-Type", "X-Other"]), st.text(max_size=30))
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@SETTINGS
@given(
    st.integers(100, 599),
    HEADERS,
    st.one_of(
        st.binary(max_size=300),
        JSONISH.map(lambda v: pl.Series([0]).to_frame().write_json().encode() if v is None else repr(v).encode()),
        st.builds(
            lambda status, data: b'{"status": "%s", "data": %s}' % (status.encode(), data.encode()),
            st.sampled_from(["success", "error", "weird"]),
            st.sampled_from(['{"sir_id": 5}', '{"sir_id": "x"}', '["Invalid API Key"]', "[]", "null", "7"]),
        ),
    ),
    st.booleans(),
)
def test_the_answer_classifier_never_raises_anything_else(status, headers, body, complete):
    try:
        out = Classifier(("secret-key",)).classify("k", status, headers, body, 1, complete=complete)
    except (RequestError, AbortError) as exc:
        assert "secret-key" not in str(exc)
        return
    assert isinstance(out, Outcome) and status < 500 and status not in (408, 429)
    if out.status == Status.CREATED:  # only ever from a whole 2xx answer with a valid sir_id
        assert 200 <= status < 300 and complete and 0 <= out.sir_id < 2**63


TEXT = st.text(alphabet=string.ascii_letters + string.digits + " -:_", min_size=1, max_size=20)
PAYLOAD = ("org_id", "contact_id", "sir_flag", "sir_context", "sir_planned_dt", "sir_channel", "sir_status")
ROWS = st.lists(st.fixed_dictionaries(dict.fromkeys(PAYLOAD, TEXT)), min_size=1, max_size=5)


@SETTINGS
@given(ROWS, st.randoms(use_true_random=False), st.sampled_from(["", " ", "\t", "  "]))
def test_row_keys_are_stable_under_column_order_and_whitespace(rows, rng, pad):
    keyed = lambda df: validate(df, ["Pending"]).select(row_key())["row_key"].to_list()  # noqa: E731
    base = pl.DataFrame([{**GOOD, **r, "source_row": 1} for r in rows], schema=frame({}).schema)
    columns = base.columns.copy()
    rng.shuffle(columns)
    padded = base.with_columns((pl.lit(pad) + pl.col(c) + pl.lit(pad)).alias(c) for c in PAYLOAD)
    assert keyed(base) == keyed(base.select(columns)) == keyed(padded)
