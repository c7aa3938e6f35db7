"""The sandbox with a server-side log of every answer: (arrival time, HTTP status).

    python -c "from bench._timed_sandbox import main; main()" --port 0 --rate-limit 100 ...
Takes `si-ingest sandbox`'s options (parsed by pipeline.cli, built by pipeline.sandbox.serve),
prints the same "sandbox listening on URL" line, and adds `GET /_bench/log`:
{"t0": when the limiter started (its schedule's second 0), "log": [[arrival, status], ...],
"gc": [[start, generation, seconds], ...] (the sandbox's own garbage collections)},
times on CLOCK_MONOTONIC, which every process on the machine shares. The sandbox's own
`--record` holds created requests without times, and `/_sandbox/stats` only 1-second peaks;
per-phase goodput and the 429s' arrival times need this. Nothing in pipeline/ is changed:
the route handler is wrapped from outside.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.cli import build_parser
from pipeline.sandbox.app import Sandbox
from pipeline.sandbox.serve import config_from_args, until_signalled


class TimedSandbox(Sandbox):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[tuple[float, int]] = []
        self.gc: list[tuple[float, int, float]] = []  # (monotonic start, generation, seconds) of each collection
        self.t0 = time.monotonic()
        started = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.monotonic()
            else:
                self.gc.append((started[0], info["generation"], time.monotonic() - started[0]))

        gc.callbacks.append(on_gc)

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/_bench/log", self._bench_log)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        url = await super().start(host, port)
        start = getattr(self._gate, "_start", None)  # the gate's clock origin (its schedule's 0 s)
        self.t0 = start if start is not None else time.monotonic()
        return url

    async def _add_si_request(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        status = 0  # a dropped connection
        try:
            response = await super()._add_si_request(request)
            status = response.status
            return response
        finally:
            self.log.append((arrived, status))

    async def _bench_log(self, request: web.Request) -> web.Response:
        return web.Response(
            body=orjson.dumps({"t0": self.t0, "log": self.log, "gc": self.gc}), content_type="application/json"
        )


async def serve(argv: list[str]) -> None:
    args = build_parser().parse_args(["sandbox", *argv])
    sandbox = TimedSandbox(config_from_args(args))
    url = await sandbox.start(args.host, args.port)
    print(f"sandbox listening on {url}", flush=True)
    try:
        await until_signalled()
    finally:
        await sandbox.stop()


def main() -> None:
    asyncio.run(serve(sys.argv[1:]))


if __name__ == "__main__":
    main()
