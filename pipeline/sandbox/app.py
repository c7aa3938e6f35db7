"""The local Zyntro simulator (aiohttp.web): the documented endpoint, faithfully, plus faults.

What it implements from `shared/api/addSIRequest.md`: HTTP 200 for success and error alike,
the documented messages (with the extra detail the flag/channel ones carry), auth by
api_key + developer_secret, an IP whitelist, contacts per org, increasing `sir_id`s.

What production gateways do that it can inject, each with a probability per request and a
`seed` for repeatable runs:
- latency (uniform in a range), before anything else;
- a rate limit (limits.py): a sliding window (more than N requests in the last second -> 429
  with `Retry-After`; N may follow a schedule) or nginx's leaky bucket (429, no Retry-After);
- 500/502/503 with HTML bodies (503 with `Retry-After`), before processing (`error_statuses`
  picks which);
- a 200 whose body is not JSON (a proxy's page or a truncated answer), before processing;
- the connection dropped before processing, or after the SI request was created;
- after the SI request was created: a 500/502/504 page (a gateway whose backend was slower
  than its timeout), Envoy's 503 for a backend connection that broke, a 301/302/303 redirect
  (Post/Redirect/Get), the success body cut short, or the answer trickled a byte at a time.
Faults that come "before processing" create nothing, so a client that retries them creates
no duplicate; the "after" ones did create the request, and a client must treat them as unknown.

Every created SI request is kept (and appended to `record` as JSON lines, flushed at once)
so tests can count duplicates; GET /_sandbox/requests and /_sandbox/stats expose them, and POST
/_sandbox/reset starts it over.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from .limits import LeakyBucket, SlidingWindow

BASE_PATH = "/apis/v2/public/crm"
DEFAULT_API_KEY = "sandbox-api-key"
DEFAULT_DEVELOPER_SECRET = "zdk_sandbox_secret"
DEFAULT_ORG_ID = "5f0c2a9e-3b1d-4c8e-9a47-2d6b8e1f0c3a"
FLAGS = ("keep_warm", "form_action_email", "form_action_sms", "form_action_call", "engagement_signal")
CHANNELS = ("email", "sms", "phone", "social-media", "other")

MSG_MISSING_API_KEY = "Missing API Key"
MSG_INVALID_API_KEY = "Invalid API Key"
MSG_NOT_WHITELISTED = "IP address not whitelisted"
MSG_INVALID_SECRET = "Invalid developer_secret"
MSG_MISSING_SECRET = "Missing developer_secret"
MSG_MISSING_FIELDS = "Missing org_id / contact_id / sir_context / sir_planned_dt"
MSG_INVALID_FLAG = "Missing or invalid sir_flag. Allowed: " + ", ".join(FLAGS)
MSG_INVALID_CHANNEL = "Missing or invalid sir_channel. Allowed: " + ", ".join(CHANNELS)
MSG_NOT_FOUND = "Contact not found in this organization"
MSG_UNDOCUMENTED = "Temporary failure in the SI queue, please try again later"  # not in the API's table

# Envoy's 503 when its connection to the backend broke after the request went up it
_ENVOY_RESET = b"upstream connect error or disconnect/reset before headers. reset reason: connection termination"
_ATS_CONNECT_FAILED = (  # Apache Traffic Server's body_factory/default/connect#failed_connect, answered with 502
    b'<HTML>\n<HEAD>\n<TITLE>Could Not Connect</TITLE>\n</HEAD>\n\n<BODY BGCOLOR="white" FGCOLOR="black">\n'
    b'<H1>Could Not Connect</H1>\n<HR>\n\n<FONT FACE="Helvetica,Arial"><B>\n'
    b"Description: Could not connect to the requested server host.\n</B></FONT>\n<HR>\n</BODY>\n"
)
_HTML_5XX = {  # and a gateway's 404 (nginx's page): no route to the API, nothing processed
    404: b"<html><head><title>404 Not Found</title></head><body><center><h1>404 Not Found</h1></center></body></html>",
    504: (
        b"<html><head><title>504 Gateway Time-out</title></head>"
        b"<body><h1>504 Gateway Time-out</h1>The server didn't respond in time.</body></html>"
    ),
    500: (
        b"<html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1></body></html>"
    ),
    502: (
        b"<html><head><title>502 Bad Gateway</title></head>"
        b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
    ),
    503: (
        b"<html><head><title>503 Service Temporarily Unavailable</title></head>"
        b"<body><h1>503 Service Temporarily Unavailable</h1></body></html>"
    ),
}
_MALFORMED = (b'{"data": {"sir_id": 4', b"<html><body>Please wait...</body></html>", b"", b"OK")


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxConfig:
    api_key: str = DEFAULT_API_KEY
    developer_secret: str = DEFAULT_DEVELOPER_SECRET
    org_id: str = DEFAULT_ORG_ID
    accounts: tuple[tuple[str, str], ...] = ()  # more (api_key, org_id) pairs: an agency's client orgs
    whitelist: tuple[str, ...] = ("127.0.0.1", "::1")
    contacts: frozenset[str] | None = None  # None: every contact of the org exists
    latency_ms: tuple[float, float] = (0.0, 0.0)
    rate_limit: int | None = None  # requests in any 1 s window before 429 with Retry-After
    limit_schedule: tuple[tuple[float, int], ...] = ()  # (seconds since start, limit): a moving rate_limit
    rate_headers: bool = False  # state the sliding window's limit in RateLimit-* headers
    leaky_rate: float | None = None  # nginx limit_req: requests/s drained...
    leaky_burst: int = 10  # ...with this burst; over it, 429 without Retry-After
    leaky_status: int = 429  # limit_req_status: nginx's own default is 503
    leaky_delay: bool = False  # limit_req without nodelay: over the rate, requests wait instead
    retry_after: float = 1.0  # seconds, sent with 429 and 503
    error_rate: float = 0.0  # probability of a 5xx page before processing
    error_statuses: tuple[int, ...] = (500, 502, 503)  # which statuses error_rate answers
    connect_failed_rate: float = 0.0  # probability of a gateway's 502 "Could Not Connect" (ATS) page
    malformed_rate: float = 0.0  # probability of a 200 with a body that is not JSON
    drop_before_rate: float = 0.0  # probability of closing the connection before processing
    drop_after_rate: float = 0.0  # probability of closing it after creating the SI request
    error_after_rate: float = 0.0  # probability of a 500/502/504 page after creating it
    error_after_statuses: tuple[int, ...] = (500, 502, 504)  # ...or 503 (Envoy) or 301/302/303 (a redirect)
    cut_after_rate: float = 0.0  # probability of cutting the success body short after creating it
    trickle_after_rate: float = 0.0  # probability of trickling the answer after creating it
    trickle_interval: float = 1.0  # seconds between two bytes of a trickled answer
    keepalive_timeout: float = 75.0  # close a kept-alive connection idle this long (nginx 75 s, Apache 5 s)
    seed: int | None = None
    record: Path | None = None
    odd_error_rate: float = 0.0  # probability of an error answer whose message the API does not document
    mixed_body_rate: float = 0.0  # probability a gateway put the previous request's body on this one
    replay_rate: float = 0.0  # probability a cache answers with the last success again, creating nothing
    tls_cert: Path | None = None  # serve https with this certificate chain (PEM) and key
    tls_key: Path | None = None
    first_sir_id: int = 1000


@dataclass
class _State:
    created: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    peers: set[tuple[str, int]] = field(default_factory=set)  # client (host, port): one per connection


class Sandbox:
    """The simulator: `await start(host, port)`, then `url`; `await stop()`."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._rng = random.Random(self.config.seed)
        self._state = _State()
        self._next_id = self.config.first_sir_id
        self._runner: web.AppRunner | None = None
        self._record: BinaryIO | None = None
        self._gate: SlidingWindow | LeakyBucket | None = None
        self._previous: bytes | None = None  # the last request's body (mixed_body_rate)
        self._last_success: bytes | None = None  # the last success answer's body (replay_rate)
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20, middlewares=[_drop_middleware])
        app.router.add_post(f"{BASE_PATH}/addSIRequest", self._add_si_request)
        app.router.add_get("/_sandbox/requests", self._requests)
        app.router.add_get("/_sandbox/stats", self._stats)
        app.router.add_post("/_sandbox/reset", self._reset)
        return app

    def reset(self) -> None:
        """Back to the state it started in: nothing created, the limit's clock and the seeded
        faults from the start, the record file emptied (the test harness reuses one sandbox per
        set of flags instead of starting a process for every test)."""
        self._rng = random.Random(self.config.seed)
        self._state = _State()
        self._next_id = self.config.first_sir_id
        self._gate = self._make_gate()
        self._previous = self._last_success = None
        if self._record is not None:
            self._record.seek(0)
            self._record.truncate()

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(status=204)

    def _make_gate(self) -> SlidingWindow | LeakyBucket | None:
        cfg, now = self.config, time.monotonic()
        if cfg.leaky_rate is not None:
            return LeakyBucket(cfg.leaky_rate, cfg.leaky_burst, now, delay=cfg.leaky_delay)
        schedule = cfg.limit_schedule
        if not schedule and cfg.rate_limit is not None:
            schedule = ((0.0, cfg.rate_limit),)
        if schedule:
            return SlidingWindow(schedule, _seconds(cfg.retry_after), cfg.rate_headers, now)
        return None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._gate = self._make_gate()
        if self.config.record is not None:
            self._record = open(self.config.record, "ab")  # noqa: ASYNC230, SIM115 - once, before serving; kept until stop()
        self._runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, keepalive_timeout=self.config.keepalive_timeout
        )
        await self._runner.setup()
        tls = None
        if self.config.tls_cert is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        site = web.TCPSite(self._runner, host, port, ssl_context=tls)
        await site.start()
        bound = self._runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"{'https' if tls else 'http'}://{shown}:{bound[1]}{BASE_PATH}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._record is not None:
            self._record.close()
            self._record = None

    def stats(self) -> dict[str, Any]:
        return {
            "requests": len(self._state.arrivals),
            "created": len(self._state.created),
            "peak_1s": peak_per_second(self._state.arrivals),
            "answers": dict(self._state.answers),
            "connections": len(self._state.peers),  # connections that carried at least one request
        }

    async def _requests(self, request: web.Request) -> web.Response:
        return web.json_response(self._state.created, dumps=lambda o: orjson.dumps(o).decode())

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _add_si_request(self, request: web.Request) -> web.StreamResponse:
        cfg, rng, state = self.config, self._rng, self._state
        now = time.monotonic()
        state.arrivals.append(now)
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        if peer is not None:
            state.peers.add((str(peer[0]), int(peer[1])))
        low, high = cfg.latency_ms
        if high > 0:
            await asyncio.sleep(rng.uniform(low, high) / 1000)
        extra: dict[str, str] = {}
        if self._gate is not None:
            admitted, extra = self._gate.admit(now)
            if not admitted:
                if cfg.leaky_rate is not None and cfg.leaky_status == 503:  # nginx's default page
                    return self._answer(503, _HTML_5XX[503], "text/html", extra, kind="503_limit")
                return self._answer(429, b'{"message": "Too Many Requests"}', "application/json", extra)
            if isinstance(self._gate, LeakyBucket) and self._gate.wait > 0:  # limit_req without nodelay
                await asyncio.sleep(self._gate.wait)
        body = await request.read()
        roll = rng.random()
        if roll < cfg.drop_before_rate:
            return self._drop("drop_before")
        roll -= cfg.drop_before_rate
        if roll < cfg.error_rate:
            status = rng.choice(cfg.error_statuses)
            headers = {"Retry-After": _seconds(cfg.retry_after)} if status == 503 else {}
            return self._answer(status, _HTML_5XX.get(status, _HTML_5XX[500]), "text/html", headers)
        roll -= cfg.error_rate
        if roll < cfg.connect_failed_rate:  # the gateway's connection to the API failed: nothing processed
            return self._answer(502, _ATS_CONNECT_FAILED, "text/html", {}, kind="502_connect_failed")
        roll -= cfg.connect_failed_rate
        if roll < cfg.malformed_rate:
            return self._answer(200, rng.choice(_MALFORMED), "text/html", {})
        roll -= cfg.malformed_rate
        if roll < cfg.odd_error_rate:
            return self._error(MSG_UNDOCUMENTED)
        roll -= cfg.odd_error_rate
        if roll < cfg.replay_rate and self._last_success is not None:  # a cache storing POST answers
            return self._answer(200, self._last_success, "application/json", dict(extra), kind="replayed")
        roll -= cfg.replay_rate
        sent, mixed = body, roll < cfg.mixed_body_rate
        if mixed and self._previous is not None:  # Caddy: a retry with another request's buffered body
            body = self._previous
            self._state.answers["mixed_body"] = self._state.answers.get("mixed_body", 0) + 1
        self._previous = sent
        roll = 1.0 if mixed else roll - cfg.mixed_body_rate  # this request's fault, no other
        answer = self._process(request, body)
        answer.headers.update(extra)
        if answer.status == 200 and isinstance(answer.body, bytes) and b'"success"' in answer.body:
            self._last_success = answer.body
        if roll < cfg.drop_after_rate:
            return self._drop("drop_after")
        roll -= cfg.drop_after_rate
        if roll < cfg.error_after_rate:
            status = rng.choice(cfg.error_after_statuses)
            if status < 400:  # Post/Redirect/Get: the answer to a processed POST
                where = {"Location": request.path.rsplit("/", 1)[0] + "/siRequest"}
                return self._answer(status, b"", "text/html", where, kind=f"{status}_after")
            page = _ENVOY_RESET if status == 503 else _HTML_5XX[status]
            return self._answer(
                status, page, "text/plain" if status == 503 else "text/html", {}, kind=f"{status}_after"
            )
        roll -= cfg.error_after_rate
        if roll < cfg.cut_after_rate:
            return await self._stream(request, answer, cut=True)
        roll -= cfg.cut_after_rate
        if roll < cfg.trickle_after_rate:
            return await self._stream(request, answer, cut=False)
        return answer

    async def _stream(self, request: web.Request, answer: web.Response, *, cut: bool) -> web.StreamResponse:
        """Send `answer`'s body cut short (then close), or a byte every trickle_interval seconds."""
        label = "cut_after" if cut else "trickle_after"
        self._state.answers[label] = self._state.answers.get(label, 0) + 1
        body = answer.body if isinstance(answer.body, bytes) else b""
        response = web.StreamResponse(
            status=answer.status, headers={"Content-Type": "application/json", "Content-Length": str(len(body))}
        )
        await response.prepare(request)
        if cut:
            await response.write(body[: len(body) // 2])
            if request.transport is not None:
                request.transport.close()
            return response
        for byte in body:
            await response.write(bytes([byte]))
            await asyncio.sleep(self.config.trickle_interval)
        await response.write_eof()
        return response

    def _process(self, request: web.Request, body: bytes) -> web.Response:
        cfg = self.config
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            return self._error("Invalid JSON body")
        field_ = _text(payload, "api_key")
        if not field_:
            return self._error(MSG_MISSING_API_KEY)
        org_of_key = {cfg.api_key: cfg.org_id, **dict(cfg.accounts)}
        if field_ not in org_of_key:
            return self._error(MSG_INVALID_API_KEY)
        if request.remote not in cfg.whitelist:
            return self._error(MSG_NOT_WHITELISTED)
        secret = _text(payload, "developer_secret")
        if not secret:
            return self._error(MSG_MISSING_SECRET)
        if secret != cfg.developer_secret:
            return self._error(MSG_INVALID_SECRET)
        values = {k: _text(payload, k) for k in ("org_id", "contact_id", "sir_context", "sir_planned_dt")}
        missing = [k for k, v in values.items() if not v]
        if missing:
            return self._error(f"{MSG_MISSING_FIELDS}: {', '.join(missing)}")
        flag, channel = _text(payload, "sir_flag"), _text(payload, "sir_channel")
        if flag not in FLAGS:
            return self._error(MSG_INVALID_FLAG)
        if channel not in CHANNELS:
            return self._error(MSG_INVALID_CHANNEL)
        contact = values["contact_id"]
        own_org = org_of_key[field_]
        if values["org_id"].lower() != own_org.lower() or (
            cfg.contacts is not None and contact.lower() not in cfg.contacts
        ):
            return self._error(MSG_NOT_FOUND)
        sir_id, self._next_id = self._next_id, self._next_id + 1
        record = {
            "sir_id": sir_id,
            "org_id": values["org_id"],
            "contact_id": contact,
            "sir_flag": flag,
            "sir_context": values["sir_context"],
            "sir_planned_dt": values["sir_planned_dt"],
            "sir_channel": channel,
            "sir_status": _text(payload, "sir_status") or "Pending",
            "account": own_org,
        }
        self._state.created.append(record)
        if self._record is not None:
            self._record.write(orjson.dumps(record) + b"\n")
            self._record.flush()
        data = {k: record[k] for k in ("sir_id", "sir_flag", "contact_id", "sir_channel", "sir_planned_dt")}
        return self._answer(200, orjson.dumps({"data": data, "status": "success"}), "application/json", {})

    def _error(self, message: str) -> web.Response:
        return self._answer(
            200, orjson.dumps({"data": [message], "status": "error"}), "application/json", {}, kind="error"
        )

    def _answer(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str], kind: str | None = None
    ) -> web.Response:
        label = kind or ("success" if status == 200 and content_type == "application/json" else str(status))
        if status == 200 and content_type != "application/json":
            label = "malformed"
        self._state.answers[label] = self._state.answers.get(label, 0) + 1
        return web.Response(status=status, body=body, content_type=content_type, headers=headers)

    def _drop(self, label: str) -> web.StreamResponse:
        self._state.answers[label] = self._state.answers.get(label, 0) + 1
        raise _Dropped()


class _Dropped(Exception):
    pass


@web.middleware
async def _drop_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _Dropped:
        if request.transport is not None:
            request.transport.close()
        raise asyncio.CancelledError() from None


def _text(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    return value.strip() if isinstance(value, str) else ""


def _seconds(value: float) -> str:
    return str(max(0, round(value)))


def peak_per_second(arrivals: list[float]) -> int:
    """The most arrivals in any window [t, t + 1s) (two pointers over sorted times)."""
    times = sorted(arrivals)
    best = start = 0
    for end, t in enumerate(times):
        while times[start] <= t - 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best
