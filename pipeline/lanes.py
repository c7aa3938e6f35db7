"""The run's API keys, each with its own client, ceiling and controller (a lane per key).

A single-key run has one lane. A multi-org run (config `[orgs."<org_id>"]`) has one per org,
keyed by the lower-cased org_id, plus the default lane for rows of other orgs when the
default key is set. A lane's stop is chained to the run's, so a signal stops every lane,
while an account error stops only the lane it came from (submit.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .adaptive import AUTO_START, Controller
from .config import Config, Credentials
from .errors import AbortError, AmbiguousError, CircuitOpen, TransientError
from .limiter import RateLimiter, StopEvent
from .models import ErrorCode, Outcome, Status

if TYPE_CHECKING:  # aiohttp loads only when a run has something to send (sending.submit)
    from .client import ZyntroClient

BREAKER_HINT = "every row gets the same refusal; fix the input or the account before resuming"
BREAKER_HINTS: dict[str, str] = {
    ErrorCode.NOT_FOUND: "the contacts are not in this org: was the export made for another org than the rows' "
    "org_id (or ZYNTRO_ORG_ID)?",
    ErrorCode.API_ERROR: "Zyntro keeps refusing rows with a message it does not document: if it is about the rows"
    " (a date it will not take, say), fix them or raise --breaker; else check Zyntro's status",
    ErrorCode.INVALID_FLAG: "the API refuses every sir_flag: check the export's flag column",
    ErrorCode.INVALID_CHANNEL: "the API refuses every sir_channel: check the export's channel column",
    ErrorCode.MISSING_FIELDS: "the API finds required fields missing in every row: check the column mapping",
}
AMBIGUOUS_BREAKER = 10  # stop after this many requests in a row end `unknown` (at most --breaker)
# Rows refused in a row trip only where the API has not answered for this long (or never in this
# run): a rate limit refuses in bursts between answers (a 1 s window at half the run's rate, one
# try per row, refused 10 rows in a row every second: review h12), a service that is down does not
REFUSED_QUIET_S = 10.0
UNREACHABLE = (ErrorCode.CONNECT_ERROR, ErrorCode.CONNECT_TIMEOUT)  # nothing ever left: no connection


@dataclass
class Lane:
    """One API key's own path: its client, ceiling, controller, breaker and stop.

    A multi-org run has a lane per org (README "Multi-org runs"): an account error or a
    tripped breaker on one org stops that lane only; its rows stay `pending`.
    """

    client: ZyntroClient | None  # None: no key for rows outside the configured orgs (checked before sending)
    limiter: RateLimiter
    stop: asyncio.Event
    controller: Controller | None = None
    breaker: deque[str | None] = field(default_factory=lambda: deque(maxlen=0))
    abort: AbortError | None = None
    requests: int = 0
    final: Counter[str] = field(default_factory=Counter)
    unknown_streak: int = 0  # requests in a row that ended `unknown` (the ambiguous breaker)
    unreachable_streak: int = 0  # rows in a row that used up their tries never connecting
    refused_streak: int = 0  # rows in a row that used up their tries on a gateway's "not processed" (503, 429...)
    answered_at: float | None = None  # time.monotonic() of the last HTTP answer from the API (None: none yet)
    paused_until: float = 0.0  # the end of the last long pause a server asked for (logged once)

    def reached(self) -> None:
        """An HTTP answer came: the streaks of `unknown`, unreachable and refused rows end."""
        self.unknown_streak = self.unreachable_streak = self.refused_streak = 0
        self.answered_at = time.monotonic()

    def answered(self, outcome: Outcome) -> CircuitOpen | None:
        """An API answer. The breaker trips when the last N are all the same row-level error
        (every contact NOT_FOUND: the export came from another org)."""
        self.reached()
        breaker = self.breaker
        if breaker.maxlen == 0:
            return None
        breaker.append(None if outcome.status == Status.CREATED else outcome.error_code)
        code = breaker[0]
        if code is None or len(breaker) < (breaker.maxlen or 0) or any(c != code for c in breaker):
            return None
        hint = BREAKER_HINTS.get(code, BREAKER_HINT)
        return CircuitOpen(code, f"the last {len(breaker)} answers were all {code}: {hint}")

    def ended_unknown(self, exc: AmbiguousError) -> CircuitOpen | None:
        """A request that ended `unknown`. AMBIGUOUS_BREAKER of them in a row (at most --breaker)
        trip: a gateway failing every request after it leaves (its timeout shorter than the
        API's latency, a backend down behind it) would otherwise turn the whole export into rows
        to check by hand, one request each."""
        self.unknown_streak += 1
        self.unreachable_streak = self.refused_streak = 0
        if not self._trips(self.unknown_streak):
            return None
        return CircuitOpen(
            str(exc.code),
            f"the last {self.unknown_streak} requests all ended unknown (last: {exc.code}): something between"
            " here and Zyntro fails after requests leave (a gateway's timeout, a backend behind it); fix it"
            " before resuming. Those rows may have been created: check them in Zyntro, then --resend-unknown",
        )

    def _trips(self, streak: int) -> bool:
        """A streak of `unknown` or unreachable rows that stops the lane: AMBIGUOUS_BREAKER, at
        most --breaker (0: never), unless it is already stopping."""
        limit = min(AMBIGUOUS_BREAKER, self.breaker.maxlen or 0)
        return bool(limit) and streak >= limit and not self.stop.is_set()

    def gave_up(self, exc: TransientError, tries: int) -> CircuitOpen | None:
        """A row whose tries are used up on a failure that was not processed. AMBIGUOUS_BREAKER
        rows in a row (at most --breaker) trip, with no answer from the API between them:
        - rows that never got a connection: the API cannot be reached (down, a firewall, a wrong
          host or port), and each row would otherwise take its --max-attempts tries with backoff:
          100k rows had taken ~15 h against a refused port and ~8 days against one that drops
          connections, a nightly run never ending;
        - rows that a gateway refused every time (503, 429, 408: "not processed"): a load balancer
          with every backend down answers so at once (HAProxy's "No server is available", an ALB
          with no healthy target), and 100k rows had taken ~18 h at a fixed rate and ~6 days in
          auto mode, which slows down on each 503 (found by a review, h11a). A rate limit alone
          does not trip it: the streak counts only where the API has not answered for
          REFUSED_QUIET_S (or at all in this run), and an answer ends it."""
        if exc.code in UNREACHABLE:
            self.refused_streak = 0
            self.unreachable_streak += 1
            if not self._trips(self.unreachable_streak):
                return None
            return CircuitOpen(
                str(exc.code),
                f"the last {self.unreachable_streak} rows never got a connection in {tries} tries each (last:"
                f" {exc}): the API cannot be reached from here (down, a firewall, a wrong host or port in"
                " --base-url, a proxy). Nothing was sent for them; they stay to send, with the rest, once it is"
                " reachable",
            )
        self.unreachable_streak = 0
        if exc.http_status is None:
            self.refused_streak = 0
            return None
        self.refused_streak += 1
        quiet = self.answered_at is None or time.monotonic() - self.answered_at >= REFUSED_QUIET_S
        if not quiet or not self._trips(self.refused_streak):
            return None
        return CircuitOpen(
            str(exc.code),
            f"the last {self.refused_streak} rows were refused in {tries} tries each (last: {exc}), with no"
            " answer from the API between them: the service behind --base-url is down or shedding every"
            " request (a load balancer with no backend up, an outage), or its rate limit is far below"
            " --rate. Nothing was created for them; they stay to send, with the rest, once it answers",
        )


@contextlib.asynccontextmanager
async def open_lanes(
    config: Config, credentials: Credentials, stop: StopEvent
) -> AsyncIterator[tuple[Lane | None, dict[str, Lane]]]:
    """(the default lane or None when there is no default key, {org_id: its lane}), clients open."""
    from .answers import Reached, account_hints
    from .client import ZyntroClient  # aiohttp, loaded only for a run that sends

    loop = asyncio.get_running_loop()
    reached = Reached()  # one base URL for every org: an answer through it counts for all
    async with contextlib.AsyncExitStack() as stack:

        async def lane(creds: Credentials, rate: float | Literal["auto"], lane_stop: StopEvent, key_env: str) -> Lane:
            limiter = RateLimiter(AUTO_START if rate == "auto" else float(rate), lane_stop)
            controller = Controller(limiter, loop.time) if rate == "auto" else None
            client = ZyntroClient(
                config.api.base_url,
                creds,
                concurrency=config.run.concurrency,
                connect_timeout=config.api.connect_timeout,
                read_timeout=config.api.read_timeout,
                keepalive_timeout=config.api.keepalive_timeout,
                retry_gateway_errors=config.api.retry_gateway_errors,
                retry_503=config.api.retry_503,
                check_echo=config.api.check_echo,
                ca_bundle=str(config.api.ca_bundle) if config.api.ca_bundle else None,
                on_headers=controller.headers if controller is not None else None,
                hints=account_hints(key_env, config.credentials.developer_secret_env),
                reached=reached,
            )
            await stack.enter_async_context(client)
            return Lane(client, limiter, lane_stop, controller)

        default = (
            await lane(credentials.for_org(None), config.run.rate, stop, config.credentials.api_key_env)
            if credentials.api_key
            else None
        )
        orgs = {}
        for org_id, org in config.orgs.items():
            org_stop = StopEvent()
            stop.on_set(org_stop.set)
            orgs[org_id] = await lane(
                credentials.for_org(org_id), org.rate or config.run.rate, org_stop, org.api_key_env
            )
        yield default, orgs
