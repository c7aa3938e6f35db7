"""One request -> one classified outcome (aiohttp). The only module that talks HTTP.

The answer is classified by `answers.py`; here the transport's failures are: a connect
failure or connect timeout (nothing was sent) -> TransientError; a connection lost, or no
complete answer within `read_timeout` of the request leaving -> AmbiguousError (`unknown`).
`read_timeout` is a deadline for the whole answer, not per chunk: a server that drips one
byte a second cannot hold a worker (or a SIGTERM) for longer. It starts when the request
has its connection, so a slow connect is not mistaken for an answer that may follow a created
request: until then the request has `connect_timeout` more, and the connector (`_Connector`,
which every request passes through, new connection or reused) sets the deadline to
`read_timeout` from the moment it hands the connection over. aiohttp's trace hooks did this
before, at 11 us of event-loop CPU per request (20% of a bare aiohttp POST: with any trace
config, every request awaits a handful of trace signals); the connector costs about 1 us.
An answer is read up to `answers.BODY_CAP` bytes only.
Redirects are never followed: a 307/308 would re-send the body, credentials included.

Proxies: an `https_proxy` / `HTTPS_PROXY` in the environment is used for the API (not for
loopback hosts; `no_proxy` is honoured), through a CONNECT tunnel, so the proxy never sees the
body or the credentials. A tunnel the proxy refuses means nothing was sent: a 407 stops the run
(ProxyError, exit 2), any other refusal is CONNECT_ERROR and retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ssl
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from .answers import BODY_CAP, Classifier, Reached, code_for_message, parse_retry_after
from .config import Credentials
from .errors import AmbiguousError, CancelledBeforeSending, ProxyError, TLSError, TransientError
from .models import ErrorCode, Outcome, Row
from .proxy import env_proxy

MAX_HEADER_BYTES = 64 << 10  # one header line of an answer, at most
MAX_HEADERS = 512

__all__ = ["Classifier", "ZyntroClient", "code_for_message", "map_aiohttp_errors", "parse_retry_after"]


@contextlib.contextmanager
def map_aiohttp_errors(
    *, proxy_credentials: bool = False, handed_over: Callable[[], bool] = lambda: True
) -> Iterator[None]:
    """Translate aiohttp's exceptions into the pipeline's, in one place (httpx-style).

    `handed_over()` says whether the request had been given its connection (`_Connector`):
    until then no byte of it was written, so whatever failed (a proxy that closed, or answered
    the CONNECT with something that is not HTTP; a proxy variable aiohttp cannot use) failed to
    connect, and the row is retried, never `unknown` (it had been, "after the request was
    sent", and ten of them tripped the breaker: found by a review, h7a)."""
    try:
        try:
            yield
        except (aiohttp.ClientHttpProxyError, aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
            raise  # their own answers below
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            if handed_over():
                raise
            timed_out = isinstance(exc, TimeoutError)
            reason = _reason(exc)
            raise TransientError(
                ErrorCode.CONNECT_TIMEOUT if timed_out else ErrorCode.CONNECT_ERROR,
                f"no connection was made ({reason}); nothing was sent",
            ) from exc
    except aiohttp.ClientHttpProxyError as exc:  # the proxy refused the CONNECT: the tunnel never opened
        if exc.status == 407:
            what = (
                "refuses the credentials in the proxy variable (407); nothing was sent. Check them"
                if proxy_credentials
                else "asks for credentials (407); nothing was sent. Put them in the proxy variable"
            )
            raise ProxyError(
                ErrorCode.PROXY_AUTH_REQUIRED,
                f"the HTTPS proxy {what} (https_proxy=http://user:password@host:port)",
                exc.status,
            ) from exc
        raise TransientError(
            ErrorCode.CONNECT_ERROR, f"the HTTPS proxy refused the tunnel: {exc.status} {exc.message}"
        ) from exc
    except aiohttp.ClientConnectorCertificateError as exc:
        raise TLSError(
            "TLS_VERIFY_FAILED",
            f"the server's TLS certificate cannot be verified ({exc.certificate_error}); nothing was sent. "
            "If a corporate proxy signs it, name its CA file in api.ca_bundle",
        ) from exc
    except aiohttp.ConnectionTimeoutError as exc:
        raise TransientError(ErrorCode.CONNECT_TIMEOUT, f"timed out connecting: {exc}") from exc
    except aiohttp.ClientConnectorError as exc:
        raise TransientError(ErrorCode.CONNECT_ERROR, f"cannot connect: {exc.os_error.strerror or exc}") from exc
    except aiohttp.SocketTimeoutError as exc:
        raise AmbiguousError(
            ErrorCode.READ_TIMEOUT, "timed out waiting for the answer after the request was sent"
        ) from exc
    except TimeoutError as exc:
        raise AmbiguousError(
            ErrorCode.READ_TIMEOUT, "no complete answer within --read-timeout of the request leaving"
        ) from exc
    except aiohttp.ClientResponseError as exc:  # an answer came back, but one aiohttp cannot parse
        raise AmbiguousError(
            ErrorCode.UNEXPECTED_RESPONSE,
            f"an answer came back that cannot be read ({exc.message or type(exc).__name__}):"
            " the request may have been created",
        ) from exc
    except aiohttp.ClientError as exc:
        raise AmbiguousError(
            ErrorCode.CONNECTION_LOST, f"connection lost after the request was sent: {type(exc).__name__}"
        ) from exc
    except OSError as exc:
        raise AmbiguousError(
            ErrorCode.CONNECTION_LOST, f"connection lost after the request was sent: {exc.strerror or exc}"
        ) from exc


def _reason(exc: BaseException) -> str:
    """An exception's first line for a message (aiohttp's `str()` fails on some of its own)."""
    try:
        text = str(getattr(exc, "message", "") or exc)
    except Exception:  # only for a message
        text = ""
    return text.splitlines()[0] if text.strip() else type(exc).__name__


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
        keepalive_timeout: float = 4.0,
        retry_gateway_errors: bool = False,
        retry_503: bool = True,
        check_echo: bool = True,
        ca_bundle: str | None = None,
        on_headers: Callable[[Mapping[str, str]], None] | None = None,
        hints: Mapping[str, str] | None = None,
        reached: Reached | None = None,
    ) -> None:
        self._on_headers = on_headers
        self.url = base_url.rstrip("/") + "/addSIRequest"
        if credentials.api_key is None:
            raise ValueError("a client needs one API key: use Credentials.for_org")
        self._prefix = (
            b'{"api_key":'
            + orjson.dumps(credentials.api_key.reveal())
            + b',"developer_secret":'
            + orjson.dumps(credentials.developer_secret.reveal())
            + b","
        )
        self._classifier = Classifier(
            credentials.values(),
            retry_gateway_errors=retry_gateway_errors,
            retry_503=retry_503,
            hints=hints,
            check_echo=check_echo,
            reached=reached,
        )
        self._concurrency = concurrency
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._keepalive_timeout = keepalive_timeout
        self._ca_bundle = ca_bundle
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None
        self.proxy, self._proxy_auth = env_proxy(self.url)

    def __repr__(self) -> str:
        return f"ZyntroClient(url={self.url!r})"

    async def __aenter__(self) -> ZyntroClient:
        connector = _Connector(
            limit=self._concurrency,
            limit_per_host=self._concurrency,
            keepalive_timeout=self._keepalive_timeout,  # config.DEFAULT_KEEPALIVE_TIMEOUT says why
            ssl=tls_context(self._ca_bundle),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            raise_for_status=False,
            auto_decompress=True,
            # a gateway's long cookie or CSP header, or a CDN's many headers, on the answer to a
            # created request: past aiohttp's defaults (8190 bytes, 128 headers) it read as unknown
            max_line_size=MAX_HEADER_BYTES,
            max_field_size=MAX_HEADER_BYTES,
            max_headers=MAX_HEADERS,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, row: Row, attempts: int) -> Outcome:
        """One POST for `row`; returns created/rejected/failed or raises a RequestError / AccountError."""
        assert self._session is not None, "use ZyntroClient as an async context manager"
        body = self._prefix + row.body[1:]
        deadline: _Deadline | None = None
        handed_over = lambda: deadline is not None and deadline.connected  # noqa: E731 - read at the error
        with map_aiohttp_errors(proxy_credentials=self._proxy_auth is not None, handed_over=handed_over):
            async with asyncio.timeout(None) as timeout:
                deadline = _Deadline(timeout, self._read_timeout)
                deadline.arm(self._connect_timeout + self._read_timeout)
                token = _DEADLINE.set(deadline)
                try:
                    async with self._session.post(
                        self.url, data=body, allow_redirects=False, proxy=self.proxy, proxy_auth=self._proxy_auth
                    ) as resp:
                        payload, complete = await _read_capped(resp)
                        status, headers = resp.status, resp.headers
                except asyncio.CancelledError:
                    # cancelled from outside (not by this deadline, which the `async with` turns
                    # into TimeoutError, READ_TIMEOUT) before a connection was handed over
                    if not deadline.connected and not timeout.expired():
                        raise CancelledBeforeSending from None
                    raise
                finally:
                    _DEADLINE.reset(token)
                    deadline.disarm()
        if self._on_headers is not None:
            self._on_headers(headers)
        return self._classifier.classify(
            row.row_key,
            status,
            headers,
            payload,
            attempts,
            complete=complete,
            contact_id=row.contact_id,
            request=row.body,
        )


class _Deadline:
    """A request's answer deadline (a deadline that fires, even before the connection, is
    READ_TIMEOUT: `unknown`, fail closed) and the seconds it gets from the connection on.

    A deadline that comes due while the event loop was not running (the process stopped by
    Ctrl-Z or SIGSTOP, `docker pause`, a frozen VM, a loop blocked by a stalled write) fires
    late; both loops then run overdue timers before they read the sockets, so the answers that
    had arrived meanwhile were never read: every row in flight `unknown` although the API had
    created it and said so (12 of 16 after an 8 s pause, and the breaker stopped the run). A
    timer late by more than STALL_S is given GRACE_S more, once, for what already waits to be
    read; then it fires. A timer on time is never extended."""

    __slots__ = ("_graced", "_handle", "_when", "connected", "seconds", "timeout")

    STALL_S = 0.5  # loop lag stays under 5 ms while sending (bench/RESULTS.md): this is a stall
    GRACE_S = 1.0

    def __init__(self, timeout: asyncio.Timeout, seconds: float) -> None:
        self.timeout, self.seconds = timeout, seconds
        self._handle: asyncio.TimerHandle | None = None
        self._when = 0.0
        self._graced = False
        self.connected = False  # the connector handed the request its connection

    def arm(self, seconds: float) -> None:
        """Due `seconds` from now (replacing any earlier deadline)."""
        loop = asyncio.get_running_loop()
        self.disarm()
        self._when = loop.time() + seconds
        self._handle = loop.call_at(self._when, self._fire)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - self._when > self.STALL_S and not self._graced:  # the loop stalled: read what came first
            self._graced = True
            self._when = now + self.GRACE_S
            self._handle = loop.call_at(self._when, self._fire)
            return
        self._handle = None
        self.timeout.reschedule(now)  # expires now: TimeoutError out of the `async with`


_DEADLINE: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar("si_ingest_deadline", default=None)


class _Connector(aiohttp.TCPConnector):
    """A TCPConnector that starts the answer's deadline when it hands a request its connection."""

    async def connect(self, *args: Any, **kwargs: Any) -> aiohttp.connector.Connection:
        connection = await super().connect(*args, **kwargs)
        started = _DEADLINE.get()
        if started is not None:  # from now on the whole answer must come within read_timeout
            started.connected = True
            started.arm(started.seconds)
        return connection


async def _read_capped(resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """(the body, or its first BODY_CAP bytes; whether it is whole)."""
    if resp.content_length is not None and resp.content_length > BODY_CAP:
        return await resp.content.read(BODY_CAP), False
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size > BODY_CAP:
            return b"".join(chunks)[:BODY_CAP], False
    return b"".join(chunks), True


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Certificates are always verified; `ca_bundle` adds a custom CA (a corporate proxy's)."""
    context = ssl.create_default_context()
    if ca_bundle is not None:
        context.load_verify_locations(cafile=ca_bundle)
    return context
