"""Throughput of `si-ingest run` against the sandbox, as ratios to a bare aiohttp baseline.

    python bench/bench_submit.py [--rows 5000] [--concurrency 64]
Baseline: a fixed pool of workers POSTing the same bodies with one aiohttp session, no
validation, no journal, no rate limit, measured in the same run against the same sandbox.
Then the full CLI (load + validate + journal + results) with fsync on and with --no-fsync.
Absolute numbers on these 2-core machines are noisy; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import ENV, SandboxProc, cli, write_rows


async def baseline(url: str, bodies: list[bytes], concurrency: int) -> float:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            async with session.post(
                url + "/addSIRequest", data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                await resp.read()

    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        timings: dict[str, float] = {}
        for label, seed, extra in (("baseline", 1, None), ("cli fsync", 2, []), ("cli no-fsync", 3, ["--no-fsync"])):
            box = SandboxProc()
            rows = write_rows(folder / f"{seed}.csv", args.rows, seed=seed)
            try:
                if extra is None:
                    frame = pl.read_csv(rows, infer_schema=False).with_columns(org_id=pl.lit(ENV["ZYNTRO_ORG_ID"]))
                    creds = {"api_key": ENV["ZYNTRO_API_KEY"], "developer_secret": ENV["ZYNTRO_DEVELOPER_SECRET"]}
                    bodies = [orjson.dumps({**creds, **r}) for r in frame.to_dicts()]
                    timings[label] = asyncio.run(baseline(box.url, bodies, args.concurrency))
                else:
                    start = time.perf_counter()
                    cli(
                        "run",
                        str(rows),
                        "--base-url",
                        box.url,
                        "--results",
                        str(folder / f"{seed}-r.csv"),
                        "--rate",
                        "100000",
                        "--concurrency",
                        str(args.concurrency),
                        *extra,
                    ).wait()
                    timings[label] = time.perf_counter() - start
                assert box.get("/_sandbox/stats")["created"] == args.rows, label
            finally:
                box.close()
        base = timings["baseline"]
        for label, seconds in timings.items():
            rate = args.rows / seconds
            print(f"{label:<14} {rate:>8.0f} rows/s   {seconds:6.2f}s   ratio to baseline {base / seconds:.2f}")


if __name__ == "__main__":
    main()
