import asyncio
import contextlib
import json
import socket
import ssl
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from unittest.mock import Mock

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses

from pipeline.client import Classifier, ZyntroClient, code_for_message, map_aiohttp_errors, parse_retry_after
from pipeline.config import Credentials, Secret
from pipeline.errors import (
    AccountError,
    AmbiguousError,
    EndpointError,
    MixedAnswer,
    PermanentHTTPError,
    ProxyError,
    RedirectError,
    TLSError,
    TransientError,
)
from pipeline.models import Row, Status

BASE = "https://api.test/crm"
URL = BASE + "/addSIRequest"
CREDS = Credentials(Secret("key-123456"), Secret("zdk_secret_987"))
ROW = Row(
    "k1",
    "in.csv",
    1,
    b'{"org_id":"o","contact_id":"c","sir_flag":"keep_warm","sir_context":"x",'
    b'"sir_planned_dt":"2026-04-05 09:00:00","sir_channel":"email"}',
)


class CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 does not pass aiohttp 3.14's new `stream_writer` (aioresponses issue #289)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("stream_writer", Mock(output_size=0))
        super().__init__(*args, **kwargs)


def client(**options: Any) -> ZyntroClient:
    return ZyntroClient(BASE, CREDS, concurrency=4, connect_timeout=1, read_timeout=1, **options)


async def send(mock_kwargs: dict, exc: Exception | None = None):
    with aioresponses() as m:
        if exc is not None:
            m.post(URL, exception=exc)
        else:
            m.post(URL, response_class=CompatResponse, **mock_kwargs)
        async with client() as c:
            return await c.send(ROW, 1)


def error_body(*messages: str) -> dict:
    return {"payload": {"data": list(messages), "status": "error"}}


DOCUMENTED = [
    ("Missing API Key", "MISSING_API_KEY"),
    ("Invalid API Key", "INVALID_API_KEY"),
    ("IP address not whitelisted", "IP_NOT_WHITELISTED"),
    ("Invalid developer_secret", "INVALID_DEVELOPER_SECRET"),
    ("Missing developer_secret", "MISSING_DEVELOPER_SECRET"),
    ("Missing org_id / contact_id / sir_context / sir_planned_dt", "MISSING_FIELDS"),
    ("Missing contact_id", "MISSING_FIELDS"),
    ("Missing or invalid sir_flag. Allowed: keep_warm, form_action_email", "INVALID_FLAG"),
    ("missing or invalid SIR_CHANNEL", "INVALID_CHANNEL"),
    ("Contact not found in this organization", "NOT_FOUND"),
    ("Something else entirely", "API_ERROR"),
]


@pytest.mark.parametrize(("message", "code"), DOCUMENTED)
def test_code_for_message(message, code):
    assert code_for_message(message) == code


async def test_success_is_created():
    out = await send({"payload": {"data": {"sir_id": 456, "sir_flag": "keep_warm"}, "status": "success"}})
    assert (out.status, out.sir_id, out.http_status, out.attempts) == (Status.CREATED, 456, 200, 1)


@pytest.mark.parametrize(
    ("message", "code"),
    [d for d in DOCUMENTED if d[1] in ("MISSING_FIELDS", "INVALID_FLAG", "INVALID_CHANNEL", "NOT_FOUND")],
)
async def test_row_errors_are_rejected(message, code):
    out = await send(error_body(message + " (detail)"))
    assert out.status == Status.REJECTED and out.error_code == code
    assert out.error_message == message + " (detail)"


async def test_an_undocumented_error_is_failed_not_rejected():
    """An error answer means nothing was created: the next run may send the row again."""
    out = await send(error_body("Something else entirely"))
    assert out.status == Status.FAILED and out.error_code == "API_ERROR"
    assert out.error_message == "Something else entirely"


@pytest.mark.parametrize(("message", "code"), DOCUMENTED[:5])
async def test_account_errors_abort(message, code):
    with pytest.raises(AccountError) as info:
        await send(error_body(message))
    assert info.value.code == code
    assert "key-123456" not in str(info.value) and "zdk_secret_987" not in str(info.value)


async def test_account_error_wins_over_row_error():
    with pytest.raises(AccountError) as info:
        await send(error_body("Contact not found in this organization", "Invalid API Key"))
    assert info.value.code == "INVALID_API_KEY"


@pytest.mark.parametrize("status", [401, 403])
async def test_http_401_403_abort(status):
    with pytest.raises(AccountError) as info:
        await send({"status": status, "body": "<html>denied</html>"})
    assert info.value.code == f"HTTP_{status}"


async def test_429_with_retry_after_is_transient():
    with pytest.raises(TransientError) as info:
        await send({"status": 429, "headers": {"Retry-After": "7"}, "body": "slow down"})
    assert (info.value.code, info.value.retry_after, info.value.http_status) == ("HTTP_429", 7.0, 429)


@pytest.mark.parametrize("status", [503, 408])
async def test_not_processed_statuses_are_transient(status):
    with pytest.raises(TransientError) as info:
        await send({"status": status, "body": "<html><h1>Unavailable</h1></html>", "content_type": "text/html"})
    assert info.value.code == f"HTTP_{status}"


@pytest.mark.parametrize("status", [500, 502, 504, 501, 520])
async def test_gateway_errors_may_follow_a_creation_and_are_unknown(status):
    with pytest.raises(AmbiguousError) as info:
        await send({"status": status, "body": "<html><h1>Bad Gateway</h1></html>", "content_type": "text/html"})
    assert info.value.code == f"HTTP_{status}" and info.value.http_status == status


@pytest.mark.parametrize("status", [500, 502, 504])
def test_the_gateway_switch_retries_500_502_504(status):
    with pytest.raises(TransientError):
        Classifier(retry_gateway_errors=True).classify("k", status, {}, b"<html>", 1)
    with pytest.raises(AmbiguousError):
        Classifier(retry_gateway_errors=True).classify("k", 501, {}, b"<html>", 1)


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, "<html>proxy</html>"), (200, ""), (200, '{"data": {"sir_'), (204, ""), (201, "OK")],
)
async def test_a_2xx_that_is_not_the_documented_json_is_unknown(status, body):
    with pytest.raises(AmbiguousError) as info:
        await send({"status": status, "body": body})
    assert info.value.code == "UNEXPECTED_RESPONSE"


@pytest.mark.parametrize(
    "sir_id", ["\u00b2", 10**19, -1, 1.5, True, "12a", "", None, [1], "99999999999999999999", " 7"]
)
def test_a_sir_id_that_is_not_digits_within_int64_is_unknown(sir_id):
    body = json.dumps({"status": "success", "data": {"sir_id": sir_id}}).encode()
    with pytest.raises(AmbiguousError) as info:
        Classifier().classify("k", 200, {}, body, 1)
    assert info.value.code == "UNEXPECTED_RESPONSE" and "sir_id" in info.value.message


@pytest.mark.parametrize(("sir_id", "expected"), [(456, 456), ("456", 456), (2**63 - 1, 2**63 - 1), (0, 0)])
def test_valid_sir_ids_are_created(sir_id, expected):
    body = json.dumps({"status": "success", "data": {"sir_id": sir_id}}).encode()
    assert Classifier().classify("k", 200, {}, body, 1).sir_id == expected


def test_an_answer_over_the_cap_is_unknown_unless_its_status_says_not_processed():
    with pytest.raises(AmbiguousError) as info:
        Classifier().classify("k", 200, {}, b"x" * 100, 1, complete=False)
    assert info.value.code == "RESPONSE_TOO_LARGE"
    with pytest.raises(TransientError):
        Classifier().classify("k", 429, {}, b"x" * 100, 1, complete=False)


@contextlib.asynccontextmanager
async def real_server(handler, ssl_context=None):
    """A loopback aiohttp server answering every POST with `handler`; yields its base URL."""
    app = web.Application()
    app.router.add_post("/crm/addSIRequest", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if ssl_context else 'http'}://{'localhost' if ssl_context else '127.0.0.1'}:{port}/crm"
    finally:
        await runner.cleanup()


async def post_to(base: str, read_timeout: float = 1.0, **kwargs):
    async with ZyntroClient(base, CREDS, concurrency=2, connect_timeout=1, read_timeout=read_timeout, **kwargs) as c:
        return await c.send(ROW, 1)


async def test_a_long_body_is_read_only_up_to_the_cap():
    async def huge(request):
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(3):
            await response.write(b" " * (1 << 20))
        return response

    async with real_server(huge) as base:
        with pytest.raises(AmbiguousError) as info:
            await post_to(base)
    assert info.value.code == "RESPONSE_TOO_LARGE"


async def test_long_and_many_headers_a_gateway_adds_do_not_lose_a_created_answer():
    """A WAF cookie or a CSP header can pass aiohttp's 8190-byte default, and a CDN can add many
    headers: the answer of a created request must still be read (it had read as unknown)."""

    async def decorated(request):
        headers = {"Set-Cookie": "waf=" + "x" * 20_000, **{f"X-Edge-{i}": str(i) for i in range(150)}}
        return web.json_response({"status": "success", "data": {"sir_id": 77}}, headers=headers)

    async with real_server(decorated) as base:
        outcome = await post_to(base)
    assert outcome.status == Status.CREATED and outcome.sir_id == 77


async def test_read_timeout_is_a_deadline_for_the_whole_answer():
    async def trickle(request):
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for byte in b'{"status":"success","data":{"sir_id":1}}':
            await response.write(bytes([byte]))
            await asyncio.sleep(0.05)  # 2 s in all, each byte well inside a per-chunk timeout
        return response

    async with real_server(trickle) as base:
        started = time.monotonic()
        with pytest.raises(AmbiguousError) as info:
            await post_to(base, read_timeout=0.4)
        assert time.monotonic() - started < 1.0  # not connect (1 s) + read: the clock restarts at the connection
    assert info.value.code == "READ_TIMEOUT"


async def test_a_slow_connect_does_not_count_against_the_answer_deadline(monkeypatch):
    """Resolving the host takes longer than read_timeout (within connect_timeout): nothing has left
    yet, so the answer still gets its whole read_timeout and the row is created, not `unknown`."""
    from aiohttp.resolver import DefaultResolver

    real_resolve = DefaultResolver.resolve

    async def slow_resolve(self, host, port=0, family=socket.AF_INET):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.6)
        return await real_resolve(self, host, port, family)

    given = iter(range(7, 100))

    async def ok(request):
        await asyncio.sleep(0.2)
        return web.json_response({"status": "success", "data": {"sir_id": next(given)}})  # each its own, as the API

    monkeypatch.setattr(DefaultResolver, "resolve", slow_resolve)
    async with real_server(ok) as base:
        local = base.replace("127.0.0.1", "localhost")  # a name, so the connect resolves it
        async with ZyntroClient(local, CREDS, concurrency=2, connect_timeout=2, read_timeout=0.4) as client:
            outcome = await client.send(ROW, 1)
            assert outcome.status == "created" and outcome.sir_id == 7
            started = time.monotonic()  # the connection is reused now: the deadline is read_timeout again
            assert (await client.send(ROW, 1)).sir_id == 8
            assert time.monotonic() - started < 0.4


async def test_a_body_cut_short_is_unknown():
    async def cut(request):
        response = web.StreamResponse(headers={"Content-Length": "100", "Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"status":"success","da')
        request.transport.close()
        return response

    async with real_server(cut) as base:
        with pytest.raises(AmbiguousError) as info:
            await post_to(base)
    assert info.value.code == "CONNECTION_LOST"


async def test_https_verifies_certificates_and_takes_a_custom_ca(self_signed):
    key, cert = self_signed
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def ok(request):
        return web.json_response({"status": "success", "data": {"sir_id": 5}})

    async with real_server(ok, server_tls) as base:
        with pytest.raises(TLSError) as info:  # an unknown CA: refused before anything is sent; stops the run
            await post_to(base)
        assert info.value.code == "TLS_VERIFY_FAILED" and info.value.exit_code == 2 and "ca_bundle" in str(info.value)
        out = await post_to(base, ca_bundle=str(cert))
    assert out.sir_id == 5


def test_a_secret_is_scrubbed_before_the_snippet_is_cut():
    secret = "zdk_secret_987"
    for pad in range(180, 200):
        body = ("x" * pad + secret + " tail").encode()
        with pytest.raises(AmbiguousError) as info:
            Classifier(("key-123456", secret)).classify("k", 502, {}, body, 1)
        message = info.value.message
        assert all(secret[:n] not in message[-(n + 3) :] for n in range(4, len(secret) + 1)), message


@pytest.mark.parametrize("payload", [{"status": "success", "data": {}}, {"status": "weird"}, [1, 2]])
async def test_json_of_unknown_shape_is_ambiguous(payload):
    with pytest.raises(AmbiguousError) as info:
        await send({"payload": payload})
    assert info.value.code == "UNEXPECTED_RESPONSE"


@pytest.mark.parametrize("status", [404, 405])
async def test_no_endpoint_at_the_base_url_stops_the_run(status):
    with pytest.raises(EndpointError) as info:
        await send({"status": status, "body": "<html>Not Found</html>"})
    assert info.value.code == f"HTTP_{status}" and info.value.exit_code == 2 and "--base-url" in str(info.value)


@pytest.mark.parametrize("status", [400, 410, 418])
async def test_other_statuses_fail_without_retry(status):
    with pytest.raises(PermanentHTTPError) as info:
        await send({"status": status, "body": "no"})
    assert info.value.code == f"HTTP_{status}"


@pytest.mark.parametrize(
    ("status", "maybe_created"), [(301, True), (302, True), (303, True), (307, False), (308, False)]
)
async def test_a_redirect_stops_the_run_and_may_follow_a_creation(status, maybe_created):
    """A 303 is the standard answer to a POST that was processed (RFC 9110 15.4.4), and 301/302
    serve the same Post/Redirect/Get pattern: such a row must not be `failed` (sent again)."""
    location = "https://elsewhere.test/siRequest/456?key=key-123456"
    with pytest.raises(RedirectError) as info:
        await send({"status": status, "headers": {"Location": location}, "body": "moved"})
    exc = info.value
    assert exc.code == f"HTTP_{status}" and exc.exit_code == 2 and exc.maybe_created is maybe_created
    assert "https://elsewhere.test/siRequest/456" in exc.message and "key-123456" not in exc.message
    assert "--base-url" in exc.message


def success(**echo: object) -> dict:
    return {"payload": {"data": {"sir_id": 456, **echo}, "status": "success"}}


CONTACT = "5feceb66-ffc8-4f38-a952-000000000000"
UUID_ROW = Row(
    "k1",
    "in.csv",
    1,
    b'{"org_id":"o","contact_id":"' + CONTACT.encode() + b'","sir_flag":"keep_warm","sir_context":"x",'
    b'"sir_planned_dt":"2026-04-05 09:00:00","sir_channel":"email"}',
    contact_id=CONTACT,
)


async def send_row(row: Row, mock_kwargs: dict, **client_options):
    with aioresponses() as m:
        m.post(URL, response_class=CompatResponse, **mock_kwargs)
        async with client(**client_options) as c:
            return await c.send(row, 1)


@pytest.mark.parametrize(
    "echo",
    [
        {
            "contact_id": CONTACT,
            "sir_flag": "keep_warm",
            "sir_channel": "email",
            "sir_planned_dt": "2026-04-05 09:00:00",
        },
        {"contact_id": "{" + CONTACT.upper() + "}"},  # braces, upper case
        {"contact_id": "urn:uuid:" + CONTACT.replace("-", "")},  # a URN, no hyphens
        {"sir_planned_dt": "2026-04-05T07:00:00Z", "sir_flag": "Keep Warm", "sir_channel": "sms"},  # re-expressed
        {"contact_id": "not a uuid"},  # not one: not compared
        {},  # no echo at all: not required
        {"contact_id": 12, "sir_flag": None},  # not text: not compared
    ],
    ids=["same", "braces", "urn", "reformatted-fields", "not-a-uuid", "none", "not-text"],
)
async def test_a_success_for_this_rows_contact_is_created(echo):
    """Only the contact is compared: a server may echo the time in UTC or to the minute, a flag
    as its label, the channel a flag implies (a review found each); none of that is another row."""
    outcome = await send_row(UUID_ROW, success(**echo))
    assert outcome.status == Status.CREATED and outcome.sir_id == 456


async def test_a_success_for_another_contact_stops_the_run_and_is_unknown():
    """Caddy's buffer_requests with lb retries put one request's body on another's retry: the
    answer was for another row (10-14 of 60 rows had been `created` with another contact's sir_id)."""
    other = "6b86b273-ff34-4ce1-ad6b-000000000001"
    with pytest.raises(MixedAnswer) as info:
        await send_row(UUID_ROW, success(contact_id=other))
    exc = info.value
    assert exc.code == "ANSWER_MISMATCH" and exc.maybe_created and exc.exit_code == 3
    assert other in exc.message and "sir_id 456" in exc.message and "check_echo" in exc.message
    outcome = await send_row(UUID_ROW, success(contact_id=other), check_echo=False)  # a CRM that merges contacts
    assert outcome.status == Status.CREATED


async def test_a_404_carrying_the_apis_own_documented_error_is_that_error():
    outcome = await send(
        {"status": 404, "payload": {"data": ["Contact not found in this organization"], "status": "error"}}
    )
    assert outcome.status == Status.REJECTED and outcome.error_code == "NOT_FOUND" and outcome.http_status == 404
    with pytest.raises(AccountError):
        await send({"status": 404, "payload": {"data": ["Invalid API Key"], "status": "error"}})
    with pytest.raises(EndpointError):  # an error the API does not document: still "no endpoint here"
        await send({"status": 404, "payload": {"data": ["route not found"], "status": "error"}})


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            AmbiguousError,
        ),
        ("upstream connect error or disconnect/reset before headers. reset reason: remote reset", AmbiguousError),
        ("upstream connect error or disconnect/reset before headers. reset reason: connection failure", TransientError),
        ("upstream connect error or disconnect/reset before headers. reset reason: overflow", TransientError),
        (
            "<title>503 Backend fetch failed</title><h1>Error 503 Backend fetch failed</h1><p>Guru Meditation:</p>",
            AmbiguousError,
        ),
        ("no healthy upstream", TransientError),
        ("<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>", TransientError),
    ],
)
async def test_a_503_after_the_gateway_reached_the_backend_is_ambiguous(body, kind):
    """Envoy answers 503 when its connection to the backend broke before the answer's headers:
    the API may have created the request. Its 503s for a failed connect, its own overflow or no
    healthy backend (and nginx's) mean nothing was sent."""
    with pytest.raises(kind) as info:
        await send({"status": 503, "body": body})
    assert info.value.code == "HTTP_503" and type(info.value) is kind


ATS_CONNECT_FAILED = (
    "<HTML>\n<HEAD>\n<TITLE>Could Not Connect</TITLE>\n</HEAD>\n<BODY><H1>Could Not Connect</H1>\n<HR>\n"
    "<B>Description: Could not connect to the requested server host.</B></BODY>"
)


def test_traffic_servers_could_not_connect_page_stays_unknown():
    """ATS answers it while its origin is down, and also for a read error once the request was
    written (HttpSM's CONNECTION_ERROR): retried, a review's test created a row three times."""
    for status in (502, 504):
        with pytest.raises(AmbiguousError):
            Classifier(()).classify("k", status, {}, ATS_CONNECT_FAILED.encode(), 1)


def test_retry_503_off_makes_every_503_unknown():
    with pytest.raises(TransientError):
        Classifier(()).classify("k", 503, {}, b"<h1>503 Service Temporarily Unavailable</h1>", 1)
    with pytest.raises(AmbiguousError) as info:
        Classifier((), retry_503=False).classify("k", 503, {}, b"<h1>down for maintenance</h1>", 1)
    assert info.value.code == "HTTP_503"
    with pytest.raises(TransientError):  # 429 and 408 still mean "not processed"
        Classifier((), retry_503=False).classify("k", 429, {}, b"", 1)


async def test_an_answer_aiohttp_cannot_parse_is_unexpected_not_a_lost_connection():
    """An answer that came back whole but cannot be parsed (a header past the limits): the row is
    unknown, and the code says what happened (it had said the connection was lost)."""

    async def oversized(request):
        return web.json_response({"status": "success", "data": {"sir_id": 1}}, headers={"X-Big": "x" * (70 << 10)})

    async with real_server(oversized) as base:
        with pytest.raises(AmbiguousError) as info:
            await post_to(base)
    assert info.value.code == "UNEXPECTED_RESPONSE" and "cannot be read" in info.value.message


@pytest.mark.parametrize(
    "body",
    [
        b'\xef\xbb\xbf{"status":"success","data":{"sir_id":456}}',
        b'{"status":"Success","data":{"sir_id":456}}',
        b'{"status":" success ","data":{"sir_id":"456"}}',
        b'{"status":"success","data":{"sir_id":456.0}}',
    ],
    ids=["bom", "capitalised", "padded", "float-id"],
)
def test_success_variants_a_server_may_send_are_created(body):
    outcome = Classifier(()).classify("k", 200, {}, body, 1)
    assert outcome.status == Status.CREATED and outcome.sir_id == 456


@pytest.mark.parametrize("sir_id", [456.5, 2.0**60, 2.0**53, -1.0])  # 2^53 + 1 parses as 2^53
def test_a_float_sir_id_that_is_not_exact_is_ambiguous(sir_id):
    with pytest.raises(AmbiguousError):
        Classifier(()).classify("k", 200, {}, json.dumps({"status": "success", "data": {"sir_id": sir_id}}).encode(), 1)


def test_control_characters_never_reach_a_message():
    utf16 = '{"status":"oops"}'.encode("utf-16-le")
    with pytest.raises(AmbiguousError) as info:
        Classifier(()).classify("k", 200, {}, utf16, 1)
    assert "\x00" not in info.value.message
    outcome = Classifier(()).classify("k", 200, {}, b'{"status":"ERROR","data":["bad\\u0000 thing\\u0007"]}', 1)
    assert outcome.status == Status.FAILED and outcome.error_message == "bad thing"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("Error: Invalid API Key", "INVALID_API_KEY"),
        ("IP address 10.0.0.7 not whitelisted", "IP_NOT_WHITELISTED"),
        ("request refused: missing developer_secret", "MISSING_DEVELOPER_SECRET"),
        ("Missing api_key", "MISSING_API_KEY"),
        ("Error: Contact not found in this organization", "API_ERROR"),  # row-level: only at the start
        ("the contact_id is not a valid api key format", "API_ERROR"),
    ],
)
def test_account_messages_count_anywhere_row_level_ones_only_at_the_start(message, code):
    assert code_for_message(message) == code


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (aiohttp.ClientConnectorError(None, OSError(111, "Connection refused")), TransientError, "CONNECT_ERROR"),
        (aiohttp.ConnectionTimeoutError(), TransientError, "CONNECT_TIMEOUT"),
        (aiohttp.SocketTimeoutError(), AmbiguousError, "READ_TIMEOUT"),
        (TimeoutError(), AmbiguousError, "READ_TIMEOUT"),
        (aiohttp.ServerDisconnectedError(), AmbiguousError, "CONNECTION_LOST"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), AmbiguousError, "CONNECTION_LOST"),
        (aiohttp.ClientPayloadError("truncated"), AmbiguousError, "CONNECTION_LOST"),
    ],
)
async def test_transport_errors(exc, kind, code):
    """Once the request had its connection (`handed_over`), as a request through the real
    connector; through aioresponses, which has none, every error is before it (next test)."""
    with pytest.raises(kind) as info, map_aiohttp_errors(handed_over=lambda: True):
        raise exc
    assert info.value.code == code
    assert type(info.value) is kind


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (aiohttp.ServerDisconnectedError(), "CONNECT_ERROR"),  # a proxy that closed without answering CONNECT
        (aiohttp.ClientResponseError(None, (), message="Bad status line 'garbage'"), "CONNECT_ERROR"),  # not HTTP
        (aiohttp.InvalidURL("proxy.corp:3128"), "CONNECT_ERROR"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), "CONNECT_ERROR"),
        (TimeoutError(), "CONNECT_TIMEOUT"),
    ],
)
async def test_an_error_before_the_request_had_its_connection_sent_nothing(exc, code):
    """A proxy that closed or garbled its answer to CONNECT: the rows were `unknown` ("connection
    lost after the request was sent"), never resent, and ten of them stopped the run (found by a
    review, h7a). No byte of the request had been written."""
    with pytest.raises(TransientError) as info, map_aiohttp_errors(handed_over=lambda: False):
        raise exc
    assert info.value.code == code and "nothing was sent" in info.value.message
    with pytest.raises(TransientError) as info:
        await send({}, exc=exc)  # aioresponses: no connection is ever handed over
    assert info.value.code == code


async def test_request_carries_exactly_the_api_fields_and_no_redirects():
    with aioresponses() as m:
        m.post(URL, payload={"data": {"sir_id": 1}, "status": "success"}, response_class=CompatResponse)
        async with client() as c:
            await c.send(ROW, 1)
        (call,) = m.requests[("POST", aiohttp.client.URL(URL))]
    body = json.loads(call.kwargs["data"])
    assert set(body) == {
        "api_key",
        "developer_secret",
        "org_id",
        "contact_id",
        "sir_flag",
        "sir_context",
        "sir_planned_dt",
        "sir_channel",
    }
    assert body["api_key"] == "key-123456" and body["developer_secret"] == "zdk_secret_987"
    assert call.kwargs["allow_redirects"] is False


async def test_secret_echoed_by_server_is_scrubbed():
    out = await send(error_body("Contact not found in this organization for key-123456"))
    assert "key-123456" not in out.error_message


def test_client_repr_has_no_secret():
    c = client()
    assert "key-123456" not in repr(c) and "zdk_secret_987" not in repr(c)
    assert "key-123456" not in repr(CREDS) and "zdk_secret_987" not in str(CREDS)


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("99999999") == 6 * 3600
    assert parse_retry_after("1.5") == 1.5
    for odd in ("inf", "Infinity", "1e400", "1_0", "nan", "\u0661", "+5", "0x10"):  # float() takes most
        assert parse_retry_after(odd) is None, odd
    assert parse_retry_after("-5") is None  # not delay-seconds: the backoff decides
    later = datetime.now(UTC) + timedelta(seconds=120)
    assert 110 <= parse_retry_after(format_datetime(later, usegmt=True)) <= 121


@pytest.mark.parametrize(
    ("status", "kind", "code"), [(407, ProxyError, "PROXY_AUTH_REQUIRED"), (502, TransientError, "CONNECT_ERROR")]
)
async def test_a_tunnel_the_proxy_refuses_sent_nothing(status, kind, code):
    """The proxy answers CONNECT itself: the API never saw the request, whatever the status."""
    refused = aiohttp.ClientHttpProxyError(Mock(real_url=URL), (), status=status, message="refused")
    with pytest.raises(kind) as info:
        await send({}, exc=refused)
    assert info.value.code == code


async def test_a_request_cancelled_before_its_connection_says_nothing_left_and_one_after_does_not():
    """A second signal while the TLS handshake stalls: nothing of the request left, so its row is
    `pending` (it had been `unknown`, INTERRUPTED); cancelled once connected, it may have left."""
    from pipeline.errors import CancelledBeforeSending

    accepted: list[socket.socket] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        loop = asyncio.get_running_loop()

        async def accept() -> None:
            while True:
                conn, _ = await loop.sock_accept(server)
                accepted.append(conn)  # accepted, never answered: the handshake stalls

        acceptor = asyncio.ensure_future(accept())
        try:
            async with ZyntroClient(
                f"https://127.0.0.1:{port}", CREDS, concurrency=1, connect_timeout=5, read_timeout=5
            ) as c:
                task = asyncio.ensure_future(c.send(ROW, 1))
                await asyncio.sleep(0.2)
                task.cancel()
                with pytest.raises(CancelledBeforeSending):
                    await task
        finally:
            acceptor.cancel()
            for conn in accepted:
                conn.close()

    async def slow(request):
        await asyncio.sleep(0.5)  # past the cancel; the server waits for it at cleanup

    app = web.Application()
    app.router.add_post("/addSIRequest", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        async with ZyntroClient(base, CREDS, concurrency=1, connect_timeout=5, read_timeout=5) as c:
            task = asyncio.ensure_future(c.send(ROW, 1))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            assert not isinstance(info.value, CancelledBeforeSending)
    finally:
        await runner.cleanup()


async def test_a_deadline_that_fires_before_the_connection_is_a_timeout_not_a_cancellation():
    """The request's own deadline (connect + read) fired while it still connected: the handler for
    an outside cancellation turned it into CancelledBeforeSending, which asyncio.timeout does not
    turn into TimeoutError, so the worker vanished and the run hung (found by a review)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)  # never accepts; its queue filled below, so the next connect stalls
        port = server.getsockname()[1]
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        try:
            client = ZyntroClient(
                f"http://127.0.0.1:{port}", CREDS, concurrency=1, connect_timeout=0.2, read_timeout=0.1
            )
            # aiohttp's own connect timeout later than the request's deadline, as when it rounds a
            # connect timeout over 5 s up to the next second and the read timeout is under 1 s
            client._timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_connect=30)
            async with client as c:
                with pytest.raises(TransientError) as info:  # it never connected: nothing was sent
                    await asyncio.wait_for(c.send(ROW, 1), timeout=20)
                assert info.value.code == "CONNECT_TIMEOUT"
        finally:
            for filler in fillers:
                filler.close()


def test_a_repeated_sir_id_is_a_replayed_answer_within_the_window_only(monkeypatch):
    """The same sir_id twice in a run is an answer given again (a cache), never a creation; the
    memory of sir_ids is a bounded window, so one given long ago is forgotten."""
    from pipeline import answers
    from pipeline.errors import MixedAnswer

    monkeypatch.setattr(answers, "GIVEN_WINDOW", 3)
    classifier = answers.Classifier(check_echo=False)

    def answer(sir_id: int, flag: str = "keep_warm", sent: str = "keep_warm"):
        body = b'{"status": "success", "data": {"sir_id": %d, "sir_flag": "%s"}}' % (sir_id, flag.encode())
        return classifier.classify("k", 200, {}, body, 1, request=b'{"sir_flag": "%s"}' % sent.encode())

    assert [answer(i).sir_id for i in (1, 2, 3)] == [1, 2, 3]
    with pytest.raises(MixedAnswer, match="repeats sir_id 2"):
        answer(2, flag="keep_warm", sent="engagement_signal")  # another row's answer
    assert answer(2, flag="Keep_Warm").sir_id == 2  # the repeat alone: a test double's fixed sir_id, say
    assert answer(4).sir_id == 4 and answer(1, sent="engagement_signal").sir_id == 1  # 1 had left the window

    def dated(sir_id: int, echoed: str, sent: str):
        body = b'{"status": "success", "data": {"sir_id": %d, "sir_planned_dt": "%s"}}' % (sir_id, echoed.encode())
        return classifier.classify("k", 200, {}, body, 1, request=b'{"sir_planned_dt": "%s"}' % sent.encode())

    assert dated(9, "2026-12-01 08:00:00", "2026-12-01 08:00:00").sir_id == 9
    assert dated(9, "2026-12-01 08:00", "2026-12-01 08:00:00").sir_id == 9  # echoed to the minute: the same time
    with pytest.raises(MixedAnswer, match="repeats sir_id 9"):  # one contact, flag and channel, another day
        dated(9, "2026-12-01 08:00:00", "2026-12-02 08:00:00")
