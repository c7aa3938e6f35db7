"""One request -> one classified outcome (aiohttp). The only module that knows HTTP.

Classification, and why (the API has no idempotency key, so a resend is a second email):
- `status: success` with a `sir_id`                      -> created
- `status: error` with a documented message              -> its code: account-level codes raise
  AccountError (the run stops), the rest are `rejected`; an unknown message is API_ERROR
- HTTP 429, 408, 5xx, a connect failure or timeout, a body that is not JSON
                                                         -> TransientError (not processed; retry)
- HTTP 404/405: the base URL has no such endpoint (the API answers its own errors with 200)
                                                         -> EndpointError (the run stops, exit 2)
- other HTTP statuses (3xx: redirects are never followed, since they would carry the
  credentials elsewhere; 400, 404...)                    -> PermanentHTTPError (failed, no retry)
- the connection lost or the read timed out after the request went out, or a JSON answer
  of an unknown shape                                    -> AmbiguousError (unknown; not resent)
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from .config import Credentials
from .errors import AccountError, AmbiguousError, EndpointError, PermanentHTTPError, TransientError
from .models import ACCOUNT_CODES, ErrorCode, Outcome, Row, Status

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

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self._secrets = tuple(s for s in secrets if s)

    def classify(self, row_key: str, http_status: int, headers: Any, body: bytes, attempts: int) -> Outcome:
        if http_status == 429 or http_status == 408 or http_status >= 500:
            retry_after = parse_retry_after(headers.get("Retry-After"))
            raise TransientError(
                f"HTTP_{http_status}", f"HTTP {http_status}: {self._snippet(body)}", http_status, retry_after
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
        if payload is None:
            if 200 <= http_status < 300:
                raise TransientError(
                    ErrorCode.BAD_RESPONSE,
                    f"HTTP {http_status} with a body that is not JSON: {self._snippet(body)}",
                    http_status,
                )
            raise PermanentHTTPError(f"HTTP_{http_status}", f"HTTP {http_status}: {self._snippet(body)}", http_status)
        status = payload.get("status") if isinstance(payload, dict) else None
        data = payload.get("data") if isinstance(payload, dict) else None
        if status == "success" and 200 <= http_status < 300:
            sir_id = data.get("sir_id") if isinstance(data, dict) else None
            if isinstance(sir_id, bool) or not isinstance(sir_id, (int, str)) or not str(sir_id).strip().isdigit():
                raise AmbiguousError(
                    ErrorCode.UNEXPECTED_RESPONSE, f"success without a sir_id: {self._snippet(body)}", http_status
                )
            return Outcome(row_key, Status.CREATED, sir_id=int(sir_id), attempts=attempts, http_status=http_status)
        if status == "error":
            code, message = self._error_codes(payload)
            if code in ACCOUNT_CODES:
                raise AccountError(code, f"{code}: {_ACCOUNT_HINTS[code]} (API said: {message})", http_status)
            return Outcome(
                row_key,
                Status.REJECTED,
                error_code=code,
                error_message=message,
                attempts=attempts,
                http_status=http_status,
            )
        if 200 <= http_status < 300:
            raise AmbiguousError(
                ErrorCode.UNEXPECTED_RESPONSE, f"JSON answer of an unknown shape: {self._snippet(body)}", http_status
            )
        raise PermanentHTTPError(f"HTTP_{http_status}", f"HTTP {http_status}: {self._snippet(body)}", http_status)

    def _error_codes(self, payload: Any) -> tuple[ErrorCode, str]:
        """The most serious code among the error messages (account-level first), and the messages."""
        data = payload.get("data") if isinstance(payload, dict) else None
        messages = [str(m) for m in data] if isinstance(data, list) else [str(data or "")]
        messages = [self.scrub(m) for m in messages if m.strip()] or ["(no message)"]
        codes = [code_for_message(m) for m in messages]
        known = [c for c in codes if c in ACCOUNT_CODES] or [c for c in codes if c != ErrorCode.API_ERROR] or codes
        return known[0], "; ".join(messages)

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            return None

    def _snippet(self, body: bytes) -> str:
        text = body[:200].decode("utf-8", "replace")
        return self.scrub(" ".join(text.split())) or "(empty body)"

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "********")
        return text


@contextlib.contextmanager
def map_aiohttp_errors() -> Iterator[None]:
    """Translate aiohttp's exceptions into the pipeline's, in one place (httpx-style)."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise TransientError(ErrorCode.CONNECT_TIMEOUT, f"timed out connecting: {exc}") from exc
    except aiohttp.ClientConnectorError as exc:
        raise TransientError(ErrorCode.CONNECT_ERROR, f"cannot connect: {exc.os_error.strerror or exc}") from exc
    except aiohttp.SocketTimeoutError as exc:
        raise AmbiguousError(
            ErrorCode.READ_TIMEOUT, "timed out waiting for the answer after the request was sent"
        ) from exc
    except TimeoutError as exc:
        raise AmbiguousError(ErrorCode.READ_TIMEOUT, "timed out after the request was sent") from exc
    except aiohttp.ClientError as exc:
        raise AmbiguousError(
            ErrorCode.CONNECTION_LOST, f"connection lost after the request was sent: {type(exc).__name__}"
        ) from exc
    except OSError as exc:
        raise AmbiguousError(
            ErrorCode.CONNECTION_LOST, f"connection lost after the request was sent: {exc.strerror or exc}"
        ) from exc


class ZyntroClient:
    """POSTs rows to {base_url}/addSIRequest over one pooled aiohttp session."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        concurrency: int,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self.url = base_url.rstrip("/") + "/addSIRequest"
        self._prefix = (
            b'{"api_key":'
            + orjson.dumps(credentials.api_key.reveal())
            + b',"developer_secret":'
            + orjson.dumps(credentials.developer_secret.reveal())
            + b","
        )
        self._classifier = Classifier(credentials.values())
        self._concurrency = concurrency
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"ZyntroClient(url={self.url!r})"

    async def __aenter__(self) -> ZyntroClient:
        connector = aiohttp.TCPConnector(
            limit=self._concurrency, limit_per_host=self._concurrency, keepalive_timeout=15
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            raise_for_status=False,
            auto_decompress=True,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, row: Row, attempts: int) -> Outcome:
        """One POST for `row`; returns created/rejected or raises a RequestError / AccountError."""
        assert self._session is not None, "use ZyntroClient as an async context manager"
        body = self._prefix + row.body[1:]
        with map_aiohttp_errors():
            async with self._session.post(self.url, data=body, allow_redirects=False) as resp:
                payload = await resp.read()
                status, headers = resp.status, resp.headers
        return self._classifier.classify(row.row_key, status, headers, payload, attempts)
