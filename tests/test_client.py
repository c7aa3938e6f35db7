import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from unittest.mock import Mock

import aiohttp
import pytest
from aioresponses import aioresponses

from pipeline.client import ZyntroClient, code_for_message, parse_retry_after
from pipeline.config import Credentials, Secret
from pipeline.errors import AccountError, AmbiguousError, EndpointError, PermanentHTTPError, TransientError
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


def client() -> ZyntroClient:
    return ZyntroClient(BASE, CREDS, concurrency=4, connect_timeout=1, read_timeout=1)


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
    [d for d in DOCUMENTED if d[1] in ("MISSING_FIELDS", "INVALID_FLAG", "INVALID_CHANNEL", "NOT_FOUND", "API_ERROR")],
)
async def test_row_errors_are_rejected(message, code):
    out = await send(error_body(message + " (detail)"))
    assert out.status == Status.REJECTED and out.error_code == code
    assert out.error_message == message + " (detail)"


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


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
async def test_5xx_html_is_transient(status):
    with pytest.raises(TransientError) as info:
        await send({"status": status, "body": "<html><h1>Bad Gateway</h1></html>", "content_type": "text/html"})
    assert info.value.code == f"HTTP_{status}"


@pytest.mark.parametrize("body", ["<html>proxy</html>", "", '{"data": {"sir_'])
async def test_200_not_json_is_bad_response(body):
    with pytest.raises(TransientError) as info:
        await send({"status": 200, "body": body})
    assert info.value.code == "BAD_RESPONSE"


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


@pytest.mark.parametrize("status", [301, 307, 400, 410])
async def test_other_statuses_fail_without_retry(status):
    with pytest.raises(PermanentHTTPError) as info:
        await send({"status": status, "headers": {"Location": "https://elsewhere.test/"}, "body": "no"})
    assert info.value.code == f"HTTP_{status}"


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
    with pytest.raises(kind) as info:
        await send({}, exc=exc)
    assert info.value.code == code
    assert type(info.value) is kind


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
    assert parse_retry_after("-5") == 0.0
    later = datetime.now(UTC) + timedelta(seconds=120)
    assert 110 <= parse_retry_after(format_datetime(later, usegmt=True)) <= 121
