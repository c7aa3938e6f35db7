"""The types that flow between stages: statuses, error codes, rows and outcomes."""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Fields of the API request built from an input row, in the order the API documents them.
API_FIELDS: tuple[str, ...] = (
    "org_id",
    "contact_id",
    "sir_flag",
    "sir_context",
    "sir_planned_dt",
    "sir_channel",
    "sir_status",
)
# Optional input columns: the API's sir_status and the caller's own idempotency key.
OPTIONAL_FIELDS: tuple[str, ...] = ("sir_status", "request_key")

SIR_FLAGS: tuple[str, ...] = (
    "keep_warm",
    "form_action_email",
    "form_action_sms",
    "form_action_call",
    "engagement_signal",
)
SIR_CHANNELS: tuple[str, ...] = ("email", "sms", "phone", "social-media", "other")

# The contract's results columns, in this order; extra columns may only follow them.
RESULT_COLUMNS: tuple[str, ...] = (
    "row_key",
    "source",
    "source_row",
    "org_id",
    "contact_id",
    "sir_flag",
    "sir_channel",
    "sir_planned_dt",
    "status",
    "sir_id",
    "error_code",
    "error_message",
    "attempts",
    "http_status",
    "updated_at",
)


# Columns after the contract's (extensions may only follow them): the input file's full path,
# so `report --errors` can find every original column of a row.
EXTRA_RESULT_COLUMNS: tuple[str, ...] = ("source_path",)


class Status(enum.StrEnum):
    CREATED = "created"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"
    PENDING = "pending"


# Statuses a later run does not send again (UNKNOWN only without --resend-unknown).
SETTLED: frozenset[Status] = frozenset({Status.CREATED, Status.REJECTED})


class ErrorCode(enum.StrEnum):
    # local validation (never sent)
    MISSING_FIELDS = "MISSING_FIELDS"
    INVALID_FLAG = "INVALID_FLAG"
    INVALID_CHANNEL = "INVALID_CHANNEL"
    INVALID_DATETIME = "INVALID_DATETIME"
    INVALID_UUID = "INVALID_UUID"
    INVALID_STATUS = "INVALID_STATUS"
    DUPLICATE_KEY = "DUPLICATE_KEY"
    # documented API errors: account level (abort the run)
    MISSING_API_KEY = "MISSING_API_KEY"
    INVALID_API_KEY = "INVALID_API_KEY"
    IP_NOT_WHITELISTED = "IP_NOT_WHITELISTED"
    INVALID_DEVELOPER_SECRET = "INVALID_DEVELOPER_SECRET"
    MISSING_DEVELOPER_SECRET = "MISSING_DEVELOPER_SECRET"
    HTTP_401 = "HTTP_401"
    HTTP_403 = "HTTP_403"
    # documented API errors: this row only
    NOT_FOUND = "NOT_FOUND"
    API_ERROR = "API_ERROR"
    # transport: retryable, then failed
    CONNECT_ERROR = "CONNECT_ERROR"
    CONNECT_TIMEOUT = "CONNECT_TIMEOUT"
    PROXY_AUTH_REQUIRED = "PROXY_AUTH_REQUIRED"  # the HTTPS proxy answered CONNECT with 407
    BAD_RESPONSE = "BAD_RESPONSE"
    # transport: ambiguous, the API may have processed the request
    CONNECTION_LOST = "CONNECTION_LOST"
    READ_TIMEOUT = "READ_TIMEOUT"
    UNEXPECTED_RESPONSE = "UNEXPECTED_RESPONSE"
    RESPONSE_TOO_LARGE = "RESPONSE_TOO_LARGE"
    ANSWER_MISMATCH = "ANSWER_MISMATCH"  # a success echoing another row's fields: a gateway mixed requests up
    NO_ANSWER_RECORDED = "NO_ANSWER_RECORDED"
    LEDGER_DAMAGED = "LEDGER_DAMAGED"  # the ledger's record of the row was damaged: it may have been sent
    # stop before an answer: the run was interrupted or aborted
    INTERRUPTED = "INTERRUPTED"


ACCOUNT_CODES: frozenset[str] = frozenset(
    {
        ErrorCode.MISSING_API_KEY,
        ErrorCode.INVALID_API_KEY,
        ErrorCode.IP_NOT_WHITELISTED,
        ErrorCode.INVALID_DEVELOPER_SECRET,
        ErrorCode.MISSING_DEVELOPER_SECRET,
        ErrorCode.HTTP_401,
        ErrorCode.HTTP_403,
    }
)


@dataclass(frozen=True, slots=True)
class Row:
    """One valid input row on its way to the API. `body` is the JSON payload without credentials."""

    row_key: str
    source: str
    source_row: int
    body: bytes
    attempts: int = 0  # tries made by earlier runs (the results show the total)
    org_id: str | None = None  # routes the row to its org's API key in a multi-org run
    contact_id: str | None = None  # as sent (lower-cased): a success answer must echo it (answers.py)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What is known about one row_key: the last record the journal holds for it."""

    row_key: str
    status: Status
    sir_id: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0
    http_status: int | None = None
    updated_at: str | None = None
