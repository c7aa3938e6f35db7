"""Journal records: the per-line check's verdicts, the vectorised check against it, the encoders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from pipeline.errors import LedgerDamaged, LedgerError
from pipeline.ledger import Ledger, LedgerPaths, replay
from pipeline.ledger import records as rec
from pipeline.models import Outcome, Status


def signed(record: Any) -> bytes:
    """A line carrying a valid checksum over whatever `record` is (no newline)."""
    return rec.encode(record).rstrip(b"\n")


def signed_payload(payload: bytes) -> bytes:
    return payload + b"\t" + rec.checksum(payload)


def vectorised(raw: bytes, pos: int = 1) -> bool:
    """Whether `decode_lines` finds the line sound; a polars error on the batch counts as not sound."""
    batch = pl.DataFrame({"pos": [pos], "line": [raw.decode("utf-8", "replace")]}, schema=_LINES)
    try:
        return bool(rec.decode_lines(batch)["ok"][0])
    except pl.exceptions.PolarsError:
        return False


_LINES = {"pos": pl.UInt32, "line": pl.String}
OUTCOME = {"q": 1, "k": "a", "s": "created", "n": 1}


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({**OUTCOME, "ledger": "si-ingest", "v": 2, "lid": "x"}, "a second header"),
        ({"q": 1, "ledger": "si-ingest", "v": 2, "lid": "x", "base": None}, "a second header"),
        ({**OUTCOME, "n": -1}, "attempts -1 is not a whole number"),
        ({**OUTCOME, "n": "1"}, "attempts '1' is not a whole number"),
        ({"q": 1, "k": "a", "s": "created"}, "attempts None is not a whole number"),
        ({"q": 1, "i": "a", "n": 1, "s": "created"}, "malformed intent record"),
        ({"q": 1, "i": "a", "n": 1, "k": "b"}, "malformed intent record"),
        ({"q": 1, "i": "a", "n": 1, "L": True}, "malformed intent record"),
        ({"q": 1, "s": "created", "n": 1}, "record without a row_key"),
        ({**OUTCOME, "s": "Created"}, "unknown status 'Created'"),
        ({"q": 1, "k": "a", "n": 1}, "unknown status None"),
        ({**OUTCOME, "id": "5"}, "field 'id' has the wrong type (str)"),
        ({**OUTCOME, "L": "yes"}, "field 'L' has the wrong type (str)"),
        ({**OUTCOME, "m": {"x": 1}}, "field 'm' has the wrong type (dict)"),
        ({**OUTCOME, "q": 2}, "out of sequence (record number 2 where 1 was expected"),
        ({**OUTCOME, "q": "1"}, "out of sequence (record number '1'"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_a_signed_but_malformed_record_is_refused_by_both_checks(record, problem):
    raw = signed(record)
    verdict = rec.check_line(raw, 1)
    assert verdict.record is None and verdict.problem is not None and verdict.problem.startswith(problem)
    assert not vectorised(raw)


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({**OUTCOME, "h": True}, "field 'h' has the wrong type (bool)"),
        ({**OUTCOME, "id": 7.5}, "field 'id' has the wrong type (float)"),
        ({**OUTCOME, "c": 5}, "field 'c' has the wrong type (int)"),
        ({**OUTCOME, "t": 5}, "field 't' has the wrong type (int)"),
        ({**OUTCOME, "m": 5}, "field 'm' has the wrong type (int)"),
        ({**OUTCOME, "L": 1}, "field 'L' has the wrong type (int)"),
        ({**OUTCOME, "id": -5}, "sir_id -5 is out of range"),
        ({**OUTCOME, "id": 2**63}, "sir_id 9223372036854775808 is out of range"),
        ({"q": 1, "k": 5, "s": "created", "n": 1}, "record without a row_key"),
        ({"q": 1, "i": 5, "n": 1}, "malformed intent record"),
        ({**OUTCOME, "n": True}, "attempts True is not a whole number"),
        ({**OUTCOME, "n": 1.0}, "attempts 1.0 is not a whole number"),
        ({**OUTCOME, "q": 1.0}, "out of sequence (record number 1.0"),
        ({**OUTCOME, "ledger": None}, "a second header"),
        ({"q": 1, "i": "a", "n": 1, "k": None}, "malformed intent record"),
    ],
)
def test_per_line_check_names_each_wrong_field(record, problem):
    verdict = rec.check_line(signed(record), 1)
    assert verdict.record is None and verdict.problem is not None and verdict.problem.startswith(problem)


@pytest.mark.parametrize(
    "record",
    [
        {**OUTCOME, "h": True},  # bool read as 1
        {**OUTCOME, "t": 5},  # number read as the text "5"
        {"q": 1, "k": 5, "s": "created", "n": 1},  # row_key 5 read as "5"
        {**OUTCOME, "id": -5},  # kept as -5
        {**OUTCOME, "id": 2**63},  # read as null
        {**OUTCOME, "n": 1.0},  # read as 1
        {**OUTCOME, "q": 1.0},  # read as 1
        {**OUTCOME, "ledger": None},  # per-line: a second header
        {"q": 1, "i": "a", "n": 1, "k": None},  # per-line: malformed intent
    ],
    ids=["bool-h", "int-t", "int-k", "negative-id", "id-2**63", "float-n", "float-q", "null-ledger", "intent-null-k"],
)
def test_vectorised_check_refuses_what_the_per_line_check_refuses(record):
    raw = signed(record)
    assert rec.check_line(raw, 1).record is None
    assert not vectorised(raw)


def test_per_line_check_of_headers():
    head = rec.header(0, "L", None).rstrip(b"\n")
    assert rec.check_line(head, 0).record == {"q": 0, "ledger": "si-ingest", "v": 2, "lid": "L", "base": None}
    assert rec.check_line(head, 1).problem.startswith("out of sequence")  # a header is only ever line 0
    other = signed({"q": 0, "ledger": "other-tool", "v": 2})
    assert rec.check_line(other, 0).problem == "not an si-ingest journal header"
    newer = signed({"q": 0, "ledger": "si-ingest", "v": 3, "lid": "L"})
    assert rec.check_line(newer, 0).problem == "journal format version 3 is not supported by this release"
    assert not vectorised(newer, 0) and vectorised(head, 0)
    # an outcome cannot stand in for the header
    assert rec.check_line(signed({**OUTCOME, "q": 0}), 0).problem == "not an si-ingest journal header"


def test_a_payload_that_is_not_json_but_carries_its_checksum():
    raw = signed_payload(b'{"q":1,"k":"a",')
    verdict = rec.check_line(raw, 1)
    assert verdict.problem == "not a JSON record" and verdict.row_key == "a"
    assert not vectorised(raw)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"q":1,"k":"abc","s":"created","n":1}\t0000000000000000', "abc"),  # wrong checksum
        (b'{"q":1,"i":"xyz","n":1}', "xyz"),  # no checksum at all
        (b'{"q":1,"k":"","s":"created"}\tabc', None),  # an empty key names nothing
        (b"\xff\xfe garbage", None),
        (b"", None),
    ],
)
def test_a_damaged_line_names_the_key_it_still_shows(raw, key):
    verdict = rec.check_line(raw, 1)
    assert verdict.record is None and verdict.problem.startswith("checksum mismatch")
    assert verdict.row_key == key
    assert not vectorised(raw)


def test_checksum_must_be_exactly_sixteen_lowercase_hex_digits():
    # a fixed time, so a fixed checksum with a letter in it (with the time of day, 1 run in ~2,000
    # drew a checksum of digits only, which upper-casing leaves as it is)
    good = rec.outcome(1, Outcome("a", Status.CREATED, sir_id=1, attempts=1, updated_at="t0")).rstrip(b"\n")
    assert rec.check_line(good, 1).record is not None and vectorised(good)
    payload, _, crc = good.rpartition(b"\t")
    assert crc.upper() != crc
    for bad in (payload + b"\t" + crc.upper(), payload + b"\t" + crc[:-1], payload + b"\t" + crc + b"0", payload + crc):
        assert rec.check_line(bad, 1).record is None
        assert not vectorised(bad)


def test_outcome_leaves_out_fields_that_are_none_and_stamps_the_time():
    line = rec.outcome(3, Outcome("k", Status.FAILED, error_code="HTTP_503", attempts=2)).rstrip(b"\n")
    record = orjson.loads(line.rpartition(b"\t")[0])
    assert set(record) == {"q", "k", "s", "n", "c", "t"}
    assert record["q"] == 3 and record["s"] == "failed" and record["c"] == "HTTP_503"
    assert record["t"].endswith("Z") and len(record["t"]) == len("2026-01-01T00:00:00.000000Z")
    kept = rec.outcome(3, Outcome("k", Status.CREATED, sir_id=9, attempts=1, updated_at="then")).rstrip(b"\n")
    assert orjson.loads(kept.rpartition(b"\t")[0])["t"] == "then"


def test_vectorised_outcome_lines_pass_the_per_line_check_and_decode_back():
    state = pl.DataFrame(
        {
            "row_key": ["a", 'q"uote\\', "tab\there\nnl", "ünï€ødé", "ctl\x01\x1f"],
            "status": ["created", "failed", "unknown", "rejected", "pending"],
            "sir_id": [1, None, None, None, None],
            "error_code": [None, "HTTP_503", "NO_ANSWER_RECORDED", "NOT_FOUND", None],
            "error_message": [None, "x\ty", "é\r\n", '"', None],
            "attempts": [1, 5, None, 1, 0],
            "http_status": [200, 503, None, 200, None],
            "updated_at": ["t1", "t2", "t3", "t4", None],
            "legacy": [False, True, False, False, False],
        },
        schema={**rec.STATE_SCHEMA, "legacy": pl.Boolean()},
    )
    lines = rec.outcome_lines(state, 7)["line"].to_list()
    decoded = []
    for i, line in enumerate(lines):
        verdict = rec.check_line(line.encode(), 7 + i)
        assert verdict.record is not None, (line, verdict.problem)
        decoded.append(rec.to_row(verdict.record, 7 + i))
    frame = rec.record_frame(decoded)
    assert frame["row_key"].to_list() == state["row_key"].to_list()
    assert frame["error_message"].to_list() == state["error_message"].to_list()
    assert frame["attempts"].to_list() == [1, 5, 0, 1, 0]  # a null try count is written as 0
    assert frame["legacy"].to_list() == [False, True, False, False, False]
    batch = pl.DataFrame({"pos": list(range(7, 12)), "line": lines}, schema=_LINES)
    vec = rec.decode_lines(batch)
    assert vec["ok"].all() and vec["row_key"].to_list() == state["row_key"].to_list()


def test_to_row_of_an_intent_and_of_a_legacy_outcome():
    assert rec.to_row({"q": 4, "i": "k", "n": 2}, 4) == {
        "q": 4,
        "intent": True,
        "row_key": "k",
        "attempts": 2,
        "legacy": False,
    }
    row = rec.to_row({"k": "k", "s": "created", "id": 3}, 9, legacy=True)
    assert row["legacy"] and row["attempts"] == 0 and row["sir_id"] == 3 and not row["intent"]


def test_state_frame_carries_every_outcome_field():
    outcome = Outcome("k", Status.REJECTED, None, "NOT_FOUND", "no such contact", 2, 200, "t")
    frame = rec.state_frame([outcome])
    assert frame.schema == pl.Schema(rec.STATE_SCHEMA)
    assert frame.row(0) == ("k", "rejected", None, "NOT_FOUND", "no such contact", 2, 200, "t")
    assert rec.empty_state().schema == frame.schema and rec.empty_state().height == 0


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({**OUTCOME, "q": 2, "s": "Created"}, "unknown status 'Created'"),
        ({**OUTCOME, "q": 2, "id": "5"}, "field 'id' has the wrong type"),
        ({"q": 2, "ledger": "si-ingest", "v": 2, "lid": "L", "base": None}, "a second header"),
        ({**OUTCOME, "q": 2, "n": -3}, "attempts -3"),
    ],
)
def test_a_signed_malformed_record_stops_the_replay_at_its_position(tmp_path: Path, record, reason):
    paths = LedgerPaths(tmp_path / "r.csv")
    good = rec.outcome(1, Outcome("a", Status.CREATED, sir_id=1, attempts=1))
    after = rec.outcome(3, Outcome("b", Status.CREATED, sir_id=2, attempts=1))
    paths.journal.write_bytes(rec.header(0, "L", None) + good + rec.encode(record) + after)
    with pytest.raises(LedgerDamaged) as info:
        replay(paths.journal)
    assert info.value.position == 2 and reason in info.value.reason
    assert info.value.row_key == record.get("k")


async def test_a_sir_id_beyond_int64_is_refused_not_silently_dropped(tmp_path: Path):
    (tmp_path / "w").mkdir()
    ledger = Ledger.open(tmp_path / "r.csv", tmp_path / "w", writable=True)
    journal = ledger.journal(fsync=False)
    await journal.intent("a", 1)
    try:
        journal.outcome(Outcome("a", Status.CREATED, sir_id=2**63, attempts=1, http_status=200))
    except LedgerError:
        return  # refused when written: fine
    journal.close()
    with pytest.raises(LedgerDamaged):  # else refused when read: an Int64 column cannot hold it
        replay(ledger.paths.journal)
