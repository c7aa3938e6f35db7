"""An HTTP answer (status, headers, body) -> an Outcome, or the error that says what to do.

The API answers its own errors with HTTP 200 and has no idempotency key, so any other status
comes from a gateway or a crash, possibly *after* the request was created, and a resend is a
second email. Hence (README "Retry classification"):

- `status: success` with a sir_id of ASCII digits within int64        -> created
- `status: error`, a documented message -> its code: account codes raise AccountError (the
  run stops), the others are `rejected`; an undocumented message is API_ERROR, `failed`
  (an error answer means nothing was created: the next run may send it again)
- HTTP 429, 408, 503: "not processed"                                 -> TransientError (retry)
- HTTP 500, 502, 504 and other 5xx, any 2xx that is not the documented JSON (cut short, an
  HTML page, empty, 204, a bad sir_id), a body over BODY_CAP           -> AmbiguousError (unknown)
  (`api.retry_gateway_errors = true` retries 500/502/504 instead, for gateways that
  guarantee those mean "not processed")
- HTTP 401/403                                                        -> AccountError
- HTTP 404/405: no endpoint at the base URL                           -> EndpointError (exit 2)
- other statuses (3xx, redirects are never followed; 400, 410...)     -> PermanentHTTPError (failed)

Nothing here raises on any bytes, headers or status (property-tested). Secrets are scrubbed
from a body before it is cut to a snippet, so a cut never keeps half of one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from . import redact
from .errors import AccountError, AmbiguousError, EndpointError, PermanentHTTPError, TransientError
from .models import ACCOUNT_CODES, ErrorCode, Outcome, Status

BODY_CAP = 1 << 20  # bytes of an answer read at most; a longer one is `unknown`
SNIPPET_CHARS = 200
MESSAGE_CHARS = 1000
INT64_MAX = 2**63 - 1
NOT_PROCESSED = frozenset({408, 429, 503})
GATEWAY_ERRORS = frozenset({500, 502, 504})
RETRY_AFTER_CAP = 6 * 3600.0  # seconds; urllib3's cap on a server's Retry-After
_MESSAGE_CODES: tuple[tuple[re.Pattern[str], ErrorCode], ...] = tuple(
    (re.compile(r"^\s*" + pattern, re.IGNORECASE), code)
    for pattern, code in (
        (r"missing api key", ErrorCode.MISSING_API_KEY),
        (r"invalid api key", ErrorCode.INVALID_API_KEY),
        (r"ip address not whitelisted", ErrorCode.IP_NOT_WHITELISTED),
        (r"invalid developer_secret", ErrorCode.INVALID_DEVELOPER_SECRET),
        (r"missing developer_secret", ErrorCode.MISSING_DEVELOPER_SECRET),
        (r"missing or invalid sir_flag", ErrorCode.INVALID_FLAG),
        (r"missing or invalid sir_channel", ErrorCode.INVALID_CHANNEL),
        (r"contact not found in this organization", ErrorCode.NOT_FOUND),
        (r"missing (org_id|contact_id|sir_context|sir_planned_dt)\b", ErrorCode.MISSING_FIELDS),
    )
)
_ACCOUNT_HINTS = {
    ErrorCode.MISSING_API_KEY: "set ZYNTRO_API_KEY (or the variable named by credentials.api_key_env)",
    ErrorCode.INVALID_API_KEY: "check the API key in ZYNTRO_API_KEY: no active user has it",
    ErrorCode.IP_NOT_WHITELISTED: "ask the client to add this machine's IP to the developer key's whitelist",
    ErrorCode.INVALID_DEVELOPER_SECRET: (
        "check ZYNTRO_DEVELOPER_SECRET; if it is lost, have the client revoke and reissue the key"
    ),
    ErrorCode.MISSING_DEVELOPER_SECRET: (
        "set ZYNTRO_DEVELOPER_SECRET (or the variable named by credentials.developer_secret_env)"
    ),
    ErrorCode.HTTP_401: "the API answered 401 Unauthorized: check the credentials",
    ErrorCode.HTTP_403: "the API answered 403 Forbidden: check the credentials and the IP whitelist",
}


def code_for_message(message: str) -> ErrorCode:
    """The documented code of an API error message (matched case-insensitively on its start)."""
    for pattern, code in _MESSAGE_CODES:
        if pattern.match(message):
            return code
    return ErrorCode.API_ERROR


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), capped at 6 hours."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


class Classifier:
    """Turns (HTTP status, headers, body) into an Outcome or a RequestError/AccountError."""

    def __init__(self, secrets: tuple[str, ...] = (), *, retry_gateway_errors: bool = False) -> None:
        self._secrets = tuple(s for s in secrets if s)
        self._retried = NOT_PROCESSED | (GATEWAY_ERRORS if retry_gateway_errors else frozenset())

    def classify(
        self,
        row_key: str,
        http_status: int,
        headers: Mapping[str, str],
        body: bytes,
        attempts: int,
        *,
        complete: bool = True,
    ) -> Outcome:
        """`complete` False: the body was longer than BODY_CAP and `body` is its start."""
        if http_status in self._retried:
            retry_after = parse_retry_after(headers.get("Retry-After"))
            raise TransientError(
                f"HTTP_{http_status}", f"HTTP {http_status}: {self._snippet(body)}", http_status, retry_after
            )
        if http_status >= 500:
            raise AmbiguousError(
                f"HTTP_{http_status}",
                f"HTTP {http_status} from a gateway: the request may have been created: {self._snippet(body)}",
                http_status,
            )
        if not complete:
            raise AmbiguousError(
                ErrorCode.RESPONSE_TOO_LARGE,
                f"HTTP {http_status} with an answer over {BODY_CAP} bytes: {self._snippet(body)}",
                http_status,
            )
        payload = self._json(body)
        if http_status in (401, 403):
            code = self._error_codes(payload)[0] if payload is not None else None
            if code not in ACCOUNT_CODES:
                code = ErrorCode.HTTP_401 if http_status == 401 else ErrorCode.HTTP_403
            raise AccountError(code, f"{code}: {_ACCOUNT_HINTS[code]}", http_status)
        if http_status in (404, 405):
            raise EndpointError(
                f"HTTP_{http_status}",
                f"HTTP {http_status} from the API: there is no addSIRequest endpoint at this base URL;"
                " check --base-url / api.base_url",
                http_status,
            )
        success = 200 <= http_status < 300
        status = payload.get("status") if isinstance(payload, dict) else None
        data = payload.get("data") if isinstance(payload, dict) else None
        if success and status == "success":
            sir_id = _sir_id(data.get("sir_id") if isinstance(data, dict) else None)
            if sir_id is None:
                raise AmbiguousError(
                    ErrorCode.UNEXPECTED_RESPONSE,
                    f"success without a valid sir_id (ASCII digits within int64): {self._snippet(body)}",
                    http_status,
                )
            return Outcome(row_key, Status.CREATED, sir_id=sir_id, attempts=attempts, http_status=http_status)
        if status == "error" and payload is not None:
            code, message = self._error_codes(payload)
            if code in ACCOUNT_CODES:
                raise AccountError(code, f"{code}: {_ACCOUNT_HINTS[code]} (API said: {message})", http_status)
            verdict = Status.FAILED if code == ErrorCode.API_ERROR else Status.REJECTED
            return Outcome(
                row_key, verdict, error_code=code, error_message=message, attempts=attempts, http_status=http_status
            )
        if success:
            what = "JSON of an unknown shape" if payload is not None else "a body that is not the API's JSON"
            raise AmbiguousError(
                ErrorCode.UNEXPECTED_RESPONSE, f"HTTP {http_status} with {what}: {self._snippet(body)}", http_status
            )
        raise PermanentHTTPError(f"HTTP_{http_status}", f"HTTP {http_status}: {self._snippet(body)}", http_status)

    def _error_codes(self, payload: Any) -> tuple[ErrorCode, str]:
        """The most serious code among the error messages (account-level first), and the messages."""
        data = payload.get("data") if isinstance(payload, dict) else None
        messages = [str(m) for m in data] if isinstance(data, list) else [str(data or "")]
        messages = [m for m in messages if m.strip()] or ["(no message)"]
        codes = [code_for_message(m) for m in messages]  # matched as sent, then scrubbed to be kept
        messages = [self.scrub(m) for m in messages]
        known = [c for c in codes if c in ACCOUNT_CODES] or [c for c in codes if c != ErrorCode.API_ERROR] or codes
        return known[0], _cut("; ".join(messages), MESSAGE_CHARS)

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            return None

    def _snippet(self, body: bytes) -> str:
        """The body's start as one line: scrubbed first, then cut (a cut never halves a secret)."""
        text = redact.window(body.decode("utf-8", "replace"), SNIPPET_CHARS, self._secrets)
        return _cut(self.scrub(" ".join(text.split())), SNIPPET_CHARS) or "(empty body)"

    def scrub(self, text: str) -> str:
        return redact.scrub(text, self._secrets)


def _sir_id(value: object) -> int | None:
    """The sir_id when it is a whole number within int64 (an int, or a string of ASCII digits)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, int) and 0 <= value <= INT64_MAX:
        return value
    return None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
