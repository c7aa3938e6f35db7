"""An HTTP answer (status, headers, body) -> an Outcome, or the error that says what to do.

The API answers its own errors with HTTP 200 and has no idempotency key, so any other status
comes from a gateway or a crash, possibly *after* the request was created, and a resend is a
second email. Hence (README "Retry classification"):

- `status: success` with a sir_id of ASCII digits within int64        -> created
  (`status` compared trimmed and case-insensitively; a UTF-8 BOM before the JSON is ignored;
  a sir_id sent as a whole float below 2^53, 456.0, is 456), unless it echoes a contact_id
  that is another UUID than the request's                              -> MixedAnswer: the
  row is `unknown` and the run stops (exit 3): a gateway mixed requests up (Caddy's
  buffer_requests with lb retries put one request's body on another's retry; 10-14 of 60
  rows were `created` with another contact's sir_id, 6-9 of them never created at all).
  Best effort: only the contact is compared (`_mixed_up` says why), and only on successes.
  Likewise a success repeating a sir_id this run was given for another row (of the last
  GIVEN_WINDOW) and echoing another flag or channel than this row's: a cache replayed an
  answer (nginx `proxy_cache_methods POST`), and the row had been recorded `created` with
  another row's sir_id, never sent again (h11a). The repeat alone is not enough (`_not_for`).
  `api.check_echo = false` turns it off (a CRM that echoes a merged contact's id)
- `status: error`, a documented message -> its code: account codes raise AccountError (the
  run stops), the others are `rejected`; an undocumented message is API_ERROR, `failed`
  (an error answer means nothing was created: the next run may send it again). An account
  message counts anywhere in the text, a row-level one only at its start (`_MESSAGE_CODES`)
- HTTP 429, 408, 503: "not processed"                                 -> TransientError (retry)
  except a 503 saying the gateway's connection to the backend broke after it was made
  (Envoy's "upstream connect error or disconnect/reset before headers", unless its reset
  reason is a failed connect or its own overflow): the API may have it -> AmbiguousError
- HTTP 500, 502, 504 and other 5xx, any 2xx that is not the documented JSON (cut short, an
  HTML page, empty, 204, a bad sir_id), a body over BODY_CAP           -> AmbiguousError (unknown)
  (`api.retry_gateway_errors = true` retries 500/502/504 instead, for gateways that
  guarantee those mean "not processed")
- HTTP 401/403                                                        -> AccountError
- HTTP 404/405: no endpoint at the base URL                           -> EndpointError (exit 2)
  unless the body is the API's error JSON with a documented message (a 404 for NOT_FOUND):
  then as that message says; and once the API has answered through this base URL, a 404/405
  is a gateway without the route for a moment (an ingress during a deploy): "not processed"
  -> TransientError (retry; had stopped the run with exit 2 after rows were created, h11a)
- 3xx (never followed: a redirect would carry the credentials)        -> RedirectError: the run
  stops (exit 2); a 301/302/303 is also the answer to a POST that was processed (RFC 9110
  15.4.4), so that row is `unknown`; after a 307/308 it stays `pending`
- other statuses (400, 410...)                                        -> PermanentHTTPError (failed)

Control characters never reach a message (a UTF-16 answer would put NULs in the results file).

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
from .errors import (
    AccountError,
    AmbiguousError,
    EndpointError,
    MixedAnswer,
    PermanentHTTPError,
    RedirectError,
    TransientError,
)
from .models import ACCOUNT_CODES, ErrorCode, Outcome, Status

BODY_CAP = 1 << 20  # bytes of an answer read at most; a longer one is `unknown`
SNIPPET_CHARS = 200
MESSAGE_CHARS = 1000
INT64_MAX = 2**63 - 1
NOT_PROCESSED = frozenset({408, 429, 503})
GATEWAY_ERRORS = frozenset({500, 502, 504})
RETRY_AFTER_CAP = 6 * 3600.0  # seconds; urllib3's cap on a server's Retry-After
_DELAY_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?", re.ASCII)  # RFC 9110 1*DIGIT; a fraction tolerated
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # kept out of messages (a UTF-16 answer is half NULs)
_BOM = b"\xef\xbb\xbf"
# Gateways' own 503 pages for a backend that failed once the request was on its way up: the
# request may have reached the API. Envoy's (unless its reset reason is a failed connect or its
# own overflow) and Varnish's "Backend fetch failed" (every backend failure, a reset after the
# POST was sent included, is that one page). Not read as "never connected": Apache Traffic
# Server's 502 "Could Not Connect". It answers it while its origin is down, but also for a read
# error after the request was written (HttpSM's CONNECTION_ERROR, an OpenSSL 3 "unexpected eof"
# from an origin that died after committing): retried, a row was created three times in a
# review's test. It stays `unknown`.
_BACKEND_RESET = re.compile(
    r"upstream connect error or disconnect/reset before headers|backend fetch failed|guru meditation", re.IGNORECASE
)
_NOT_SENT_RESET = re.compile(r"reset reason: (connection failure|overflow)", re.IGNORECASE)
# Account messages are matched anywhere in the message ("Error: Invalid API Key", "IP address
# 10.0.0.7 not whitelisted"): they are distinctive, and the worst a wrong match does is stop the
# run with nothing sent. A row-level message must start with the documented text (detail may
# follow, as the vendor doc says): a wrong match there would settle a row for good.
_MESSAGE_CODES: tuple[tuple[re.Pattern[str], ErrorCode], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), code)
    for pattern, code in (
        (r"\bmissing api[ _-]?key\b", ErrorCode.MISSING_API_KEY),
        (r"\binvalid api[ _-]?key\b", ErrorCode.INVALID_API_KEY),
        (r"\bip address\b.{0,64}\bnot whitelisted\b", ErrorCode.IP_NOT_WHITELISTED),
        (r"\binvalid developer_secret\b", ErrorCode.INVALID_DEVELOPER_SECRET),
        (r"\bmissing developer_secret\b", ErrorCode.MISSING_DEVELOPER_SECRET),
    )
) + tuple(
    (re.compile(r"^\s*" + pattern, re.IGNORECASE), code)
    for pattern, code in (
        (r"missing or invalid sir_flag", ErrorCode.INVALID_FLAG),
        (r"missing or invalid sir_channel", ErrorCode.INVALID_CHANNEL),
        (r"contact not found in this organization", ErrorCode.NOT_FOUND),
        (r"missing (org_id|contact_id|sir_context|sir_planned_dt)\b", ErrorCode.MISSING_FIELDS),
    )
)


def account_hints(key_env: str = "ZYNTRO_API_KEY", secret_env: str = "ZYNTRO_DEVELOPER_SECRET") -> dict[str, str]:
    """What to do about each account error, naming the variables this lane's key and secret
    come from (a multi-org run reads each org's key from its own)."""
    return {
        ErrorCode.MISSING_API_KEY: f"set {key_env}",
        ErrorCode.INVALID_API_KEY: f"check the API key in {key_env}: no active user has it",
        ErrorCode.IP_NOT_WHITELISTED: "ask the client to add this machine's IP to the developer key's whitelist",
        ErrorCode.INVALID_DEVELOPER_SECRET: (
            f"check {secret_env}; if it is lost, have the client revoke and reissue the key"
        ),
        ErrorCode.MISSING_DEVELOPER_SECRET: f"set {secret_env}",
        ErrorCode.HTTP_401: f"the API answered 401 Unauthorized: check the credentials ({key_env}, {secret_env})",
        ErrorCode.HTTP_403: "the API answered 403 Forbidden: check the credentials and the IP whitelist",
    }


def code_for_message(message: str) -> ErrorCode:
    """The documented code of an API error message (case-insensitively: an account message
    anywhere in it, a row-level one at its start)."""
    for pattern, code in _MESSAGE_CODES:
        if pattern.search(message):
            return code
    return ErrorCode.API_ERROR


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), capped at 6 hours."""
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):  # digits only (RFC 9110), not float()'s "inf", "1e400", "1_0"
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


# sir_ids remembered to notice an answer replayed by a cache (a few MB, whatever the input): the
# API gives each request its own, so a repeat is an answer given again, not a creation
GIVEN_WINDOW = 1 << 16


class Reached:
    """Whether an answer of the API's own has come back through the base URL in this run: one
    for every org's classifier, since they share the base URL (a multi-org run's org B had taken
    its first 404 for a wrong base URL after org A's rows were created: review h12)."""

    def __init__(self) -> None:
        self.yes = False


class Classifier:
    """Turns (HTTP status, headers, body) into an Outcome or a RequestError/AccountError."""

    def __init__(
        self,
        secrets: tuple[str, ...] = (),
        *,
        retry_gateway_errors: bool = False,
        retry_503: bool = True,
        hints: Mapping[str, str] | None = None,
        check_echo: bool = True,
        reached: Reached | None = None,
    ) -> None:
        self._secrets = tuple(s for s in secrets if s)
        self._check_echo = check_echo
        self._hints = hints or account_hints()
        self._retried = NOT_PROCESSED | (GATEWAY_ERRORS if retry_gateway_errors else frozenset())
        if not retry_503:
            self._retried -= {503}
        self.reached = reached or Reached()  # an answer of the API's own came back: the base URL is right
        self._given: dict[int, None] = {}  # the last GIVEN_WINDOW sir_ids this run was given, oldest first

    def classify(
        self,
        row_key: str,
        http_status: int,
        headers: Mapping[str, str],
        body: bytes,
        attempts: int,
        *,
        complete: bool = True,
        contact_id: str | None = None,
        request: bytes | None = None,
    ) -> Outcome:
        """`complete` False: the body was longer than BODY_CAP and `body` is its start;
        `contact_id`: the request's, which a success answer must echo (`_mixed_up`)."""
        if http_status == 503 and self._backend_reset(body):
            raise AmbiguousError(
                "HTTP_503",
                f"HTTP 503 after the gateway lost its connection to the API: the request may have been created:"
                f" {self._snippet(body)}",
                http_status,
            )
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
        if 300 <= http_status < 400:
            where = self.scrub(_CONTROL.sub("", headers.get("Location") or "(no Location)"))
            raise RedirectError(http_status, _cut(where, SNIPPET_CHARS))
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
            raise AccountError(code, f"{code}: {self._hints[code]}", http_status)
        if http_status in (404, 405) and not self._documented_error(payload):
            if self.reached.yes:
                raise TransientError(
                    f"HTTP_{http_status}",
                    f"HTTP {http_status} from a gateway after the API had answered through this base URL (a route"
                    f" missing for a moment, nothing processed): {self._snippet(body)}",
                    http_status,
                    parse_retry_after(headers.get("Retry-After")),
                )
            raise EndpointError(
                f"HTTP_{http_status}",
                f"HTTP {http_status} from the API: there is no addSIRequest endpoint at this base URL;"
                " check --base-url / api.base_url",
                http_status,
            )
        success = 200 <= http_status < 300
        status = _status(payload)
        data = payload.get("data") if isinstance(payload, dict) else None
        if success and status == "success":
            sir_id = _sir_id(data.get("sir_id") if isinstance(data, dict) else None)
            if sir_id is None:
                raise AmbiguousError(
                    ErrorCode.UNEXPECTED_RESPONSE,
                    f"success without a valid sir_id (ASCII digits within int64): {self._snippet(body)}",
                    http_status,
                )
            echoed = data.get("contact_id") if self._check_echo and isinstance(data, dict) else None
            if isinstance(echoed, str) and contact_id is not None and _mixed_up(echoed, contact_id):
                echoed, mine = (self.scrub(_CONTROL.sub("", v))[:SNIPPET_CHARS] for v in (echoed, contact_id))
                raise MixedAnswer(
                    ErrorCode.ANSWER_MISMATCH,
                    f"a success answer (sir_id {sir_id}) for another contact: it echoes contact_id {echoed!r},"
                    f" this row has {mine!r}. Something between here and the API mixes requests up (a"
                    " gateway retrying POSTs with a buffered body, such as Caddy's lb_try_duration with"
                    " buffer_requests), so requests may carry other rows' data, and rows already `created`"
                    " or `rejected` in this run may be wrong too: the run stops, this row is `unknown`. Fix"
                    f" the gateway and check sir_id {sir_id} in Zyntro ([api] check_echo = false if your CRM"
                    " echoes a merged contact's id)",
                    http_status,
                )
            if sir_id in self._given and _not_for(data, request):
                raise MixedAnswer(
                    ErrorCode.ANSWER_MISMATCH,
                    f"a success answer repeats sir_id {sir_id}, which this run was already given for another row:"
                    " something between here and the API replays answers (a cache storing POST answers, such"
                    " as nginx proxy_cache_methods POST), so this row may not have been created, and rows"
                    " already `created` or `rejected` in this run may be wrong too: the run stops, this row is"
                    f" `unknown`. Fix the gateway, check the rows with sir_id {sir_id} in Zyntro, then"
                    " --resend-unknown",
                    http_status,
                )
            self._given[sir_id] = None
            if len(self._given) > GIVEN_WINDOW:
                del self._given[next(iter(self._given))]
            self.reached.yes = True
            return Outcome(row_key, Status.CREATED, sir_id=sir_id, attempts=attempts, http_status=http_status)
        if status == "error" and payload is not None:
            code, message = self._error_codes(payload)
            if code in ACCOUNT_CODES:
                raise AccountError(code, f"{code}: {self._hints[code]} (API said: {message})", http_status)
            verdict = Status.FAILED if code == ErrorCode.API_ERROR else Status.REJECTED
            self.reached.yes = True
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
        messages = [_CONTROL.sub("", str(m)) for m in (data if isinstance(data, list) else [data or ""])]
        messages = [m for m in messages if m.strip()] or ["(no message)"]
        codes = [code_for_message(m) for m in messages]  # matched as sent, then scrubbed to be kept
        messages = [self.scrub(m) for m in messages]
        known = [c for c in codes if c in ACCOUNT_CODES] or [c for c in codes if c != ErrorCode.API_ERROR] or codes
        return known[0], _cut("; ".join(messages), MESSAGE_CHARS)

    @staticmethod
    def _json(body: bytes) -> Any:
        if body.startswith(_BOM):  # RFC 8259 lets a parser ignore one
            body = body[len(_BOM) :]
        try:
            return orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            return None

    def _documented_error(self, payload: Any) -> bool:
        """The API's own error JSON with a documented message (a 404 for NOT_FOUND, say)."""
        if _status(payload) != "error":
            return False
        return self._error_codes(payload)[0] != ErrorCode.API_ERROR

    @staticmethod
    def _backend_reset(body: bytes) -> bool:
        text = body[:4096].decode("utf-8", "replace")
        return bool(_BACKEND_RESET.search(text)) and not _NOT_SENT_RESET.search(text)

    def _snippet(self, body: bytes) -> str:
        """The body's start as one line: scrubbed first, then cut (a cut never halves a secret)."""
        text = redact.window(body.decode("utf-8", "replace"), SNIPPET_CHARS, self._secrets)
        return _cut(self.scrub(" ".join(_CONTROL.sub("", text).split())), SNIPPET_CHARS) or "(empty body)"

    def scrub(self, text: str) -> str:
        return redact.scrub(text, self._secrets)


def _status(payload: Any) -> str | None:
    """The answer's `status`, trimmed and lower-cased ("Success", " success "), if it has one."""
    status = payload.get("status") if isinstance(payload, dict) else None
    return status.strip().lower() if isinstance(status, str) else None


_UUID_IN = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.IGNORECASE)


def _not_for(data: Any, request: bytes | None) -> bool:
    """Whether a success (with a sir_id this run was given before) echoes another flag, channel or
    planned time than `request` carried. Both must hold to call it a replayed answer: a test double may give
    every request the documented sir_id 456, and a server may echo a flag as its label (then
    the flag and channel it echoes are the same for every request, and rarely this one's)."""
    try:
        sent = orjson.loads(request) if request else None
    except orjson.JSONDecodeError:
        return False
    if not isinstance(sent, dict) or not isinstance(data, dict):
        return False
    for field in ("sir_flag", "sir_channel"):
        echoed, mine = data.get(field), sent.get(field)
        if isinstance(echoed, str) and isinstance(mine, str) and echoed.strip().lower() != mine.strip().lower():
            return True
    # the planned time by its digits, as far as both go (an echo to the minute, or of the date alone,
    # is the same time); rows of one contact, flag and channel on other days had gone unseen (h12)
    echoed_dt, mine_dt = (
        re.sub(r"\D", "", v) if isinstance(v, str) else ""
        for v in (data.get("sir_planned_dt"), sent.get("sir_planned_dt"))
    )
    shared = min(len(echoed_dt), len(mine_dt), 12)
    return shared >= 8 and echoed_dt[:shared] != mine_dt[:shared]


def _mixed_up(echoed: str, sent: str) -> bool:
    """Whether the answer's contact_id is another UUID than the request's: not where they are the
    same UUID however spelled (case, braces, hyphens, urn:uuid:), or either is not one. Only the
    contact: a server may echo the time in UTC or to the minute, a flag as a label, the channel a
    flag implies (a review found each), and none of that is another row."""
    a, b = _UUID_IN.search(echoed), _UUID_IN.search(sent)
    return a is not None and b is not None and _hex(a.group(0)) != _hex(b.group(0))


def _hex(uuid: str) -> str:
    return uuid.replace("-", "").lower()


def _sir_id(value: object) -> int | None:
    """The sir_id when it is a whole number within int64 (an int, or a string of ASCII digits)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, float) and value.is_integer() and 0 <= value < 2**53:  # 456.0: exact below 2^53
        value = int(value)
    if isinstance(value, int) and 0 <= value <= INT64_MAX:
        return value
    return None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
