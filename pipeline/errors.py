"""The exception tree; whether a failure is retried is decided by its class.

    PipelineError                  anything that stops the run
    ├── ConfigError                bad flag, config key or environment      -> exit 2
    ├── InputError                 unreadable file, missing column          -> exit 2
    ├── LedgerError                results/ledger cannot be written or read -> exit 2
    │   ├── LedgerDamaged          a ledger record fails its checks         -> exit 2
    │   └── LockError              another run holds the results file       -> exit 2
    ├── Interrupted                SIGINT/SIGTERM/SIGHUP: stopped at once  -> exit 130
    └── AbortError                 an answer that every further request would get too
        ├── AccountError           the API refuses the account              -> exit 3
        ├── CircuitOpen            the last N answers were one row-level error -> exit 3
        ├── MixedAnswer            a success echoed another contact (row `unknown`) -> exit 3
        ├── EndpointError          no addSIRequest at the base URL (404/405) -> exit 2
        │   └── RedirectError      a 3xx: the base URL moved (301/302/303: that row `unknown`)
        ├── TLSError               the server's certificate cannot be verified -> exit 2
        └── ProxyError             the HTTPS proxy wants credentials (407)  -> exit 2

    RequestError                   one request failed (client.py raises, submit.py decides)
    ├── TransientError             not processed by the API: retry with backoff  -> failed
    ├── PermanentHTTPError         an HTTP answer retrying cannot change (404...) -> failed
    └── AmbiguousError             maybe processed: never retried by default     -> unknown

Every message says what to do next. None of them ever contains a credential.
"""

from __future__ import annotations

import asyncio
from pathlib import Path


def reason_of(exc: BaseException) -> str:
    """The reason an OS or polars error gives, in a few words: the OS's text where it has one
    (polars raises OSErrors whose strerror is None: then their text), else the first line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class PipelineError(Exception):
    """Base of the errors that stop a run. `exit_code` is what the CLI returns."""

    exit_code = 2


class ConfigError(PipelineError):
    """A flag, a config key or an environment variable is missing or wrong."""


class InputError(PipelineError):
    """An input file cannot be read, or lacks a required column."""


class LedgerError(PipelineError):
    """The results file or its journal cannot be written: nothing more may be sent."""


class LedgerDamaged(LedgerError):
    """A ledger file fails its checks: nothing may be sent until it is looked at and repaired."""

    def __init__(self, path: Path, position: int | None, reason: str, row_key: str | None = None) -> None:
        self.path = path
        self.position = position
        self.reason = reason
        self.row_key = row_key
        self.results: Path | None = None  # set by the store: names the commands to run next
        super().__init__(reason)

    def __str__(self) -> str:
        where = f" at record {self.position + 1}" if self.position is not None else ""
        text = f"ledger file {self.path} is damaged{where}: {self.reason}; nothing was sent"
        if self.results is not None:
            text += (
                f". List what it concerns with `si-ingest ledger check {self.results}`, then"
                f" `si-ingest ledger repair {self.results}` (rows that may have been sent become unknown)"
            )
        return text


class SavedRecords(LedgerError):
    """Records saved by a run that lost its journal wait beside the results for `ledger repair`."""


class LockError(LedgerError):
    """Another live run holds the results file."""


class Interrupted(PipelineError):
    """A signal stopped the run at once: before any request, or a second one after the last
    (stopping.py); the work folder is removed and the ledger holds everything sent."""

    exit_code = 130


class AbortError(PipelineError):
    """Every request would get this answer: stop the run at once; the rows stay `pending`
    (`maybe_created`: but the row that drew it is `unknown`, its answer may follow a creation)."""

    maybe_created = False

    def __init__(self, code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


class AccountError(AbortError):
    """The API refused the credentials or the caller's IP: every request would fail."""

    exit_code = 3


class CircuitOpen(AbortError):
    """Every recent answer was the same row-level error: stop before burning through the input."""

    exit_code = 3


class MixedAnswer(AbortError):
    """A success answer echoes another contact than the request's: something between here and
    the API (a gateway retrying with the wrong buffered body) mixes requests up, so requests may
    carry other rows' data and create them twice. The run stops at once; the row is `unknown`."""

    exit_code = 3
    maybe_created = True


class EndpointError(AbortError):
    """The base URL has no addSIRequest endpoint (HTTP 404/405): a config error."""

    exit_code = 2


class RedirectError(EndpointError):
    """The API answered a redirect (3xx, never followed: it would carry the credentials). Every
    request would get it (the base URL moved, or a login page), so the run stops; a 301/302/303
    is also how a server answers a POST it *processed* (Post/Redirect/Get), so that row is
    `unknown`. Only 307/308 say the request was not processed there. `created`: rows this run
    created through the same base URL, which make a gateway's error page the likelier cause (an
    Apache ErrorDocument to a URL turns a backend failure into a 302) than a wrong base URL."""

    def __init__(self, http_status: int, location: str, created: int = 0) -> None:
        self.location = location
        maybe = http_status not in (307, 308)
        if maybe and created:
            message = (
                f"HTTP {http_status} redirect to {location} after {created} row(s) were created through this"
                " base URL: most likely the gateway's error page for a failing backend is a redirect (Apache's"
                " ErrorDocument to a URL); this row may have been created (a redirect also answers a POST that"
                " was processed). Redirects are never followed (they would carry the credentials); fix the"
                " gateway's error pages, or check --base-url"
            )
        else:
            processed = (
                "; this row may have been created (a redirect is also how a server answers a POST it processed)"
                if maybe
                else ""
            )
            message = (
                f"HTTP {http_status} redirect to {location} (redirects are never followed: they would carry"
                f" the credentials){processed}; check --base-url /"
                " api.base_url, or, if rows went through this URL before, the gateway's error pages"
                " (Apache's ErrorDocument to a URL redirects)"
            )
        super().__init__(f"HTTP_{http_status}", message, http_status)
        self.maybe_created = maybe

    def after(self, created: int) -> RedirectError:
        """The same redirect, told with the rows this run created before it."""
        return RedirectError(self.http_status or 302, self.location, created)


class TLSError(AbortError):
    """The server's TLS certificate cannot be verified: nothing was sent; a config error."""

    exit_code = 2


class ProxyError(AbortError):
    """The HTTPS proxy refused the tunnel for want of credentials (407): nothing was sent; a config error."""

    exit_code = 2


class RequestError(Exception):
    """One request did not produce an API answer for the row."""

    def __init__(self, code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


class TransientError(RequestError):
    """The API did not process the request (429, 5xx, connect failure, garbled answer): safe to retry."""

    def __init__(
        self,
        code: str,
        message: str,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(code, message, http_status)
        self.retry_after = retry_after


class PermanentHTTPError(RequestError):
    """An HTTP status that retrying in this run cannot change (3xx, 400, 404, ...): failed, sent next run."""


class CancelledBeforeSending(asyncio.CancelledError):
    """The request was cancelled (a second signal: stop at once) before it had a connection:
    nothing of it left, so its row is `pending`, not `unknown`. A CancelledError still, so the
    task is cancelled as asked."""


class AmbiguousError(RequestError):
    """The request may have reached the API (connection lost or read timeout after sending)."""
