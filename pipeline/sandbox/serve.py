"""`si-ingest sandbox`: run the simulator in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
from pathlib import Path

import structlog

from ..errors import ConfigError, reason_of
from .app import Sandbox, SandboxConfig

log = structlog.get_logger("si_ingest.sandbox")


def read_contacts(path: Path) -> frozenset[str]:
    """Contact UUIDs, one per line (a header line or blank lines are ignored)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"contacts file {path} cannot be read: {reason_of(exc)}") from None
    return frozenset(line.strip().lower() for line in lines if line.strip() and "-" in line)


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    values: dict[str, object] = {
        "latency_ms": args.latency,
        "rate_limit": args.rate_limit,
        "retry_after": args.retry_after,
        "error_rate": args.error_rate,
        "malformed_rate": args.malformed_rate,
        "drop_before_rate": args.drop_before,
        "drop_after_rate": args.drop_after,
        "error_statuses": tuple(args.error_statuses),
        "error_after_rate": args.error_after,
        "error_after_statuses": tuple(args.error_after_statuses),
        "cut_after_rate": args.cut_after,
        "trickle_after_rate": args.trickle_after,
        "trickle_interval": args.trickle_interval,
        "keepalive_timeout": args.keepalive_timeout,
        "odd_error_rate": args.odd_error_rate,
        "mixed_body_rate": args.mixed_body,
        "replay_rate": args.replay_rate,
        "connect_failed_rate": args.connect_failed,
        "limit_schedule": args.limit_schedule,
        "rate_headers": args.rate_headers,
        "leaky_rate": args.leaky_rate,
        "leaky_burst": args.leaky_burst,
        "leaky_status": args.leaky_status,
        "leaky_delay": args.leaky_delay,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "seed": args.seed,
        "record": args.record,
    }
    if args.api_key:
        values["api_key"] = args.api_key
    if args.account:
        values["accounts"] = tuple(tuple(a.split(":", 1)) for a in args.account)
    if args.developer_secret:
        values["developer_secret"] = args.developer_secret
    if args.org_id:
        values["org_id"] = args.org_id
    if args.whitelist:
        values["whitelist"] = tuple(args.whitelist)
    if args.contacts:
        values["contacts"] = read_contacts(args.contacts)
    return SandboxConfig(**values)  # type: ignore[arg-type]  # argparse has typed each value; the dict cannot say so


async def serve(config: SandboxConfig, host: str, port: int) -> int:
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    sandbox = Sandbox(config)
    try:
        url = await sandbox.start(host, port)
    except (OSError, ssl.SSLError) as exc:
        reason = reason_of(exc)
        raise ConfigError(f"cannot serve on {host}:{port}: {reason}") from None
    print(f"sandbox listening on {url}", flush=True)
    log.info(
        "sandbox.start",
        url=url,
        rate_limit=config.rate_limit,
        error_rate=config.error_rate,
        drop_before=config.drop_before_rate,
        drop_after=config.drop_after_rate,
        seed=config.seed,
    )
    try:
        await until_signalled()
    finally:
        stats = sandbox.stats()
        await sandbox.stop()
        log.info("sandbox.stop", **stats)
    return 0


async def until_signalled() -> None:
    """Return at the first SIGINT or SIGTERM (a served sandbox's whole life)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
