"""Row keys: canonical, pinned, vectorised; and the format 1 key an upgraded ledger still knows."""

import hashlib

import polars as pl

from pipeline.keys import legacy_keys, partition_hash, row_key
from pipeline.validate import validate

from .test_validate import GOOD, frame

FIELDS = ("org_id", "contact_id", "sir_flag", "sir_context", "sir_planned_dt", "sir_channel", "sir_status")


def keys_of(*changes: dict) -> list[str]:
    return validate(frame(*changes), ["Pending"]).select(row_key())["row_key"].to_list()


def test_row_key_is_pinned_sha256_of_the_canonical_payload():
    # pinned: a change here would make every ledger forget what it sent
    canonical = {**GOOD, "sir_status": "Pending"}
    text = "\x1f".join(canonical[f] or "" for f in FIELDS)
    expected = hashlib.sha256(text.encode()).hexdigest()[:32]
    assert keys_of({}) == [expected] == ["1e596e544c84cd0c9e511668fed38dc5"]


def test_canonical_forms_share_a_key():
    base = keys_of({})[0]
    same = keys_of(
        {"contact_id": GOOD["contact_id"].upper()},
        {"org_id": " " + GOOD["org_id"].upper() + "\t"},
        {"sir_context": "  " + GOOD["sir_context"] + " "},
        {"sir_status": "Pending"},
    )
    assert same == [base] * 4
    assert keys_of({"sir_context": "other"})[0] != base
    assert keys_of({"sir_flag": "form_action_email"})[0] != base


def test_row_key_is_stable_under_column_order():
    shuffled = frame({}).select(list(reversed(frame({}).columns)))
    assert validate(shuffled, ["Pending"]).select(row_key())["row_key"].to_list() == keys_of({})


def test_request_key_is_the_row_key_trimmed():
    assert keys_of({"request_key": " crm-42 "}, {})[0] == "crm-42"
    assert keys_of({"request_key": " crm-42 "}, {})[1] != "crm-42"


def test_partition_hash_is_stable():
    kp = pl.DataFrame({"row_key": ["a", "b"]}).select(partition_hash())["kp"].to_list()
    assert kp == pl.DataFrame({"row_key": ["a", "b"]}).select(partition_hash())["kp"].to_list()
    assert all(isinstance(k, int) and 0 <= k < 2**64 for k in kp)


def test_legacy_keys_are_si_ingest_0_1s_keys_in_every_case_spelling():
    """The exact key today's main (0.1) computed, pinned, whatever case a re-export uses."""
    pinned = "6ec3137bc262747b296df08dabd76b2f"  # 0.1's key of GOOD (lower-case UUIDs)
    upper = validate(frame({"contact_id": GOOD["contact_id"].upper()}), ["Pending"]).with_columns(order=pl.lit(0))
    found = legacy_keys(upper)["row_key"].to_list()
    assert pinned in found
    text = "\x1f".join((upper[f][0] or "") for f in FIELDS)
    assert hashlib.blake2b(text.encode(), digest_size=16).hexdigest() in found
    lower = validate(frame({}), ["Pending"]).with_columns(order=pl.lit(0))
    assert pinned in legacy_keys(lower)["row_key"].to_list()
    with_key = validate(frame({"request_key": "crm-1"}), ["Pending"]).with_columns(order=pl.lit(0))
    assert set(legacy_keys(with_key)["row_key"]) == {"crm-1"}
