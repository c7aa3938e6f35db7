import polars as pl
import pytest

from pipeline.validate import validate

GOOD = {
    "source": "in.csv",
    "source_row": 1,
    "org_id": "5f0c2a9e-3b1d-4c8e-9a47-2d6b8e1f0c3a",
    "contact_id": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
    "sir_flag": "keep_warm",
    "sir_context": "Check in about the enterprise plan",
    "sir_planned_dt": "2026-04-05 09:00:00",
    "sir_channel": "email",
    "sir_status": None,
    "request_key": None,
}


def frame(*changes: dict) -> pl.DataFrame:
    rows = [{**GOOD, "source_row": i + 1, **c} for i, c in enumerate(changes)]
    return pl.DataFrame(rows, schema={k: (pl.Int64 if k == "source_row" else pl.String) for k in GOOD})


def verdicts(*changes: dict) -> list[tuple]:
    out = validate(frame(*changes), ["Pending"])
    return list(out.select("status", "error_code").iter_rows())


def test_good_row_passes():
    assert verdicts({}) == [(None, None)]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"contact_id": None}, "MISSING_FIELDS"),
        ({"org_id": "  "}, "MISSING_FIELDS"),
        ({"sir_context": ""}, "MISSING_FIELDS"),
        ({"sir_planned_dt": None}, "MISSING_FIELDS"),
        ({"sir_flag": "keepwarm"}, "INVALID_FLAG"),
        ({"sir_flag": "Keep_Warm"}, "INVALID_FLAG"),
        ({"sir_flag": None}, "INVALID_FLAG"),
        ({"sir_channel": "fax"}, "INVALID_CHANNEL"),
        ({"sir_channel": None}, "INVALID_CHANNEL"),
        ({"sir_planned_dt": "2026-02-30 09:00:00"}, "INVALID_DATETIME"),
        ({"sir_planned_dt": "2026-04-05 25:00:00"}, "INVALID_DATETIME"),
        ({"sir_planned_dt": "2026-4-5 09:00:00"}, "INVALID_DATETIME"),
        ({"sir_planned_dt": "2026-04-05T09:00:00"}, "INVALID_DATETIME"),
        ({"sir_planned_dt": "2026-04-05 09:00"}, "INVALID_DATETIME"),
        ({"sir_planned_dt": "2026-04-05 09:00:00.5"}, "INVALID_DATETIME"),
        ({"contact_id": "12345"}, "INVALID_UUID"),
        ({"contact_id": "a1b2c3d4-e5f6-7890-abcd-ef12345678"}, "INVALID_UUID"),
        ({"contact_id": "g1b2c3d4-e5f6-7890-abcd-ef1234567890"}, "INVALID_UUID"),
        ({"org_id": "not-an-org"}, "INVALID_UUID"),
        ({"sir_status": "Done"}, "INVALID_STATUS"),
    ],
)
def test_each_code(change, code):
    assert verdicts(change) == [("invalid", code)]


def test_leap_day_and_uppercase_uuid_are_valid():
    assert verdicts(
        {"sir_planned_dt": "2028-02-29 23:59:59", "contact_id": "A1B2C3D4-E5F6-7890-ABCD-EF1234567890"}
    ) == [(None, None)]


def test_whitespace_is_trimmed_and_allowed_status_passes():
    out = validate(
        frame(
            {
                "sir_flag": " keep_warm ",
                "contact_id": " a1b2c3d4-e5f6-7890-abcd-ef1234567890\t",
                "sir_status": "Pending",
            }
        ),
        ["Pending"],
    )
    assert out["error_code"].to_list() == [None]
    assert out["sir_flag"].to_list() == ["keep_warm"]


def test_first_failing_check_wins_and_message_is_precise():
    out = validate(frame({"contact_id": None, "sir_context": None, "sir_flag": "bad"}), ["Pending"])
    assert out["error_code"].to_list() == ["MISSING_FIELDS"]
    assert out["error_message"].to_list() == ["missing contact_id, sir_context"]
    out = validate(frame({"sir_flag": "x" * 100}), ["Pending"])
    message = out["error_message"][0]
    assert message.startswith("sir_flag '" + "x" * 60 + "...'") and "keep_warm" in message


@pytest.mark.parametrize(
    ("fmt", "cell", "sent"),
    [
        ("%d.%m.%Y %H:%M:%S", "05.04.2026 09:07:03", "2026-04-05 09:07:03"),
        ("%d.%m.%Y %H:%M:%S", "5.4.2026 9:07:03", "2026-04-05 09:07:03"),  # unpadded: read as meant
        ("%d/%m/%Y %H:%M", "05/04/2026 09:07", "2026-04-05 09:07:00"),
        ("%d %b %Y %H:%M", "05 apr 2026 09:07", "2026-04-05 09:07:00"),
        ("%d.%m.%Y %H:%M:%S", "31.12.2026 23:59:60", None),  # a leap second had rolled into 2027
        ("%Y-%m-%d %H:%M:%S%.f", "2026-04-05 09:00:00.900", None),  # the fraction had been dropped
        ("%Y-%m-%d %H:%M:%S%.f", "2026-04-05 09:00:00.000", "2026-04-05 09:00:00"),
        ("%d.%m.%Y %H:%M:%S", "30.02.2026 10:00:00", None),
    ],
)
def test_a_configured_datetime_format_never_alters_the_time_it_reads(fmt, cell, sent):
    """Found by a review (h7b): through `datetime_formats`, `31.12.2026 23:59:60` was sent as
    `2027-01-01 00:00:00` and `09:00:00.900` as `09:00:00`, both without a word."""
    out = validate(frame({"sir_planned_dt": cell}), ["Pending"], datetime_formats=[fmt])
    if sent is None:
        assert out["error_code"].to_list() == ["INVALID_DATETIME"]
    else:
        assert out["error_code"].to_list() == [None] and out["sir_planned_dt"].to_list() == [sent]
