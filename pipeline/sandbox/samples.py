"""Deterministic sample data: realistic planned actions with a handful of bad rows of each kind."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from .app import DEFAULT_ORG_ID

CSV_NAME = "planned_actions.csv"
PARQUET_NAME = "engagement_signals.parquet"
# Valid UUIDs the demo org does not have: the API answers NOT_FOUND for them.
UNKNOWN_CONTACTS = ("0b7e3c1a-9f2d-4e6b-8a5c-1d3f5e7a9b2c", "6d4f2b8e-1a3c-4e5f-9b7d-2c4e6a8b0d1f")

_PLANS = (
    (
        "keep_warm",
        "email",
        "Contact has not been engaged in {d} days. Send a personalized check-in email about the {p} plan.",
    ),
    ("form_action_email", "email", "Lead filled out the {p} pricing form: send the pricing PDF and a booking link."),
    ("form_action_sms", "sms", "Webinar registrant for '{p} in practice' signed up: send an SMS confirmation."),
    ("form_action_call", "phone", "High-value lead requested a callback about the {p} plan: queue an outbound call."),
    ("engagement_signal", "other", "Contact attended the {p} industry event: log it as a buying signal."),
    ("engagement_signal", "social-media", "Contact shared our {p} case study on LinkedIn."),
)
_PRODUCTS = ("enterprise", "growth", "starter", "analytics add-on", "data residency")


def _contact(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _rows(rng: random.Random, n: int, start: datetime, with_org: bool) -> list[dict[str, str | None]]:
    rows = []
    for i in range(n):
        flag, channel, text = rng.choice(_PLANS)
        when = start + timedelta(
            days=rng.randrange(0, 30), hours=rng.randrange(8, 18), minutes=rng.choice((0, 15, 30, 45))
        )
        row: dict[str, str | None] = {
            "contact_id": _contact(rng),
            "sir_flag": flag,
            "sir_channel": channel,
            "sir_context": text.format(d=rng.randrange(7, 60), p=rng.choice(_PRODUCTS)),
            "sir_planned_dt": when.strftime("%Y-%m-%d %H:%M:%S"),
            "sir_status": "Pending" if i % 5 == 0 else None,
            "owner": rng.choice(("amira@acme.test", "jonas@acme.test", "li@acme.test")),
        }
        if with_org:
            row = {"org_id": DEFAULT_ORG_ID, **row}
        rows.append(row)
    return rows


def _spoil(rows: list[dict[str, str | None]], rng: random.Random) -> None:
    """Plant bad rows of each kind, two unknown contacts and one exact repeat."""
    picks = rng.sample(range(1, len(rows)), 14)
    bad = [
        ("sir_flag", "keepwarm"),
        ("sir_flag", "Keep_Warm"),
        ("sir_channel", "fax"),
        ("sir_channel", None),
        ("sir_planned_dt", "2026-02-30 09:00:00"),
        ("sir_planned_dt", "2026-04-05 25:00:00"),
        ("sir_planned_dt", "05/04/2026 09:00"),
        ("contact_id", "12345"),
        ("contact_id", "a1b2c3d4-e5f6-7890-abcd-ef12345678"),
        ("sir_context", None),
        ("sir_status", "Done"),
        ("contact_id", UNKNOWN_CONTACTS[0]),
        ("contact_id", UNKNOWN_CONTACTS[1]),
    ]
    for index, (column, value) in zip(picks, bad, strict=False):
        rows[index][column] = value
    rows[picks[-1]] = dict(rows[picks[-1] - 1])


def generate(folder: Path, seed: int = 2026) -> list[Path]:
    """Write the CSV (no org_id column: the default org applies) and the Parquet file into `folder`."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    csv_rows = _rows(rng, 220, datetime(2026, 12, 1), with_org=False)
    _spoil(csv_rows, rng)
    parquet_rows = _rows(rng, 90, datetime(2026, 12, 7), with_org=True)
    parquet_rows[3]["sir_flag"] = "engagment_signal"
    parquet_rows[7]["org_id"] = "not-an-org"
    csv_path, parquet_path = folder / CSV_NAME, folder / PARQUET_NAME
    pl.DataFrame(csv_rows, schema=dict.fromkeys(csv_rows[0], pl.String)).write_csv(csv_path)
    pl.DataFrame(parquet_rows, schema=dict.fromkeys(parquet_rows[0], pl.String)).write_parquet(parquet_path)
    return [csv_path, parquet_path]


def demo_contacts(files: list[Path]) -> frozenset[str]:
    """Every contact in the sample files except the planted unknown ones: the demo org's contacts."""
    ids: set[str] = set()
    for path in files:
        frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema=False)
        ids.update(v.strip().lower() for v in frame["contact_id"].drop_nulls())
    return frozenset(ids - set(UNKNOWN_CONTACTS))


if __name__ == "__main__":  # regenerate sample_data/: python -m pipeline.sandbox.samples
    for written in generate(Path("sample_data")):
        print(written)
