"""The run's API keys, each with its own client, ceiling and controller (a lane per key).

A single-key run has one lane. A multi-org run (config `[orgs."<org_id>"]`) has one per org,
keyed by the lower-cased org_id, plus the default lane for rows of other orgs when the
default key is set. A lane's stop is chained to the run's, so a signal stops every lane,
while an account error stops only the lane it came from (submit.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .adaptive import AUTO_START, Controller
from .config import Config, Credentials
from .errors import AbortError
from .limiter import RateLimiter, StopEvent

if TYPE_CHECKING:  # aiohttp loads only when a run has something to send (sending.submit)
    from .client import ZyntroClient


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
    paused_until: float = 0.0  # the end of the last long pause a server asked for (logged once)


@contextlib.asynccontextmanager
async def open_lanes(
    config: Config, credentials: Credentials, stop: StopEvent
) -> AsyncIterator[tuple[Lane | None, dict[str, Lane]]]:
    """(the default lane or None when there is no default key, {org_id: its lane}), clients open."""
    from .answers import account_hints
    from .client import ZyntroClient  # aiohttp, loaded only for a run that sends

    loop = asyncio.get_running_loop()
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
                ca_bundle=str(config.api.ca_bundle) if config.api.ca_bundle else None,
                on_headers=controller.headers if controller is not None else None,
                hints=account_hints(key_env, config.credentials.developer_secret_env),
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
