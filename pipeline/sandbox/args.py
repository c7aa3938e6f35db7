"""`si-ingest sandbox`'s flags: the simulator's faults and limits, as a command line."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_sandbox_arguments(sandbox: argparse.ArgumentParser) -> None:
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback)")
    sandbox.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed on start)")
    sandbox.add_argument("--api-key", help="the key it accepts (default sandbox-api-key)")
    sandbox.add_argument("--developer-secret", help="the secret it accepts (default zdk_sandbox_secret)")
    sandbox.add_argument("--org-id", help="the account's org UUID (default 5f0c2a9e-3b1d-4c8e-9a47-2d6b8e1f0c3a)")
    sandbox.add_argument(
        "--account", action="append", metavar="KEY:ORG_ID", help="another API key and its org (repeatable)"
    )
    sandbox.add_argument("--whitelist", nargs="+", help="client IPs allowed (default loopback)")
    sandbox.add_argument("--contacts", type=Path, help="file of contact UUIDs the org has, one per line (default: all)")
    sandbox.add_argument(
        "--latency", type=_range_ms, default=(0.0, 0.0), metavar="MIN-MAX", help="milliseconds per request"
    )
    sandbox.add_argument("--rate-limit", type=int, help="requests per second before answering 429")
    sandbox.add_argument("--retry-after", type=float, default=1.0, help="seconds sent in Retry-After (429, 503)")
    sandbox.add_argument(
        "--error-rate", type=_probability, default=0.0, help="probability of a 500/502/503 HTML answer"
    )
    sandbox.add_argument(
        "--malformed-rate", type=_probability, default=0.0, help="probability of a 200 that is not JSON"
    )
    sandbox.add_argument(
        "--drop-before", type=_probability, default=0.0, help="probability of dropping the connection before processing"
    )
    sandbox.add_argument(
        "--drop-after", type=_probability, default=0.0, help="probability of dropping it after creating the request"
    )
    sandbox.add_argument(
        "--error-statuses", type=lambda v: _statuses(v, (404, *range(500, 600))), default=(500, 502, 503),
        metavar="S,S",
        help="which statuses --error-rate answers: 5xx, or 404 (an ingress without the route for a moment)"
        " (default 500,502,503)",
    )  # fmt: skip
    sandbox.add_argument(
        "--error-after", type=_probability, default=0.0,
        help="probability of a 500/502/504 page after creating the request",
    )  # fmt: skip
    sandbox.add_argument(
        "--error-after-statuses", type=_after_statuses, default=(500, 502, 504), metavar="S,S",
        help="which statuses --error-after answers (default 500,502,504): also 503 (Envoy's page when its"
        " connection to the backend broke) and 301/302/303 (a redirect after a processed POST)",
    )  # fmt: skip
    sandbox.add_argument(
        "--cut-after", type=_probability, default=0.0,
        help="probability of cutting the success answer short after creating the request",
    )  # fmt: skip
    sandbox.add_argument(
        "--trickle-after", type=_probability, default=0.0,
        help="probability of trickling the answer a byte at a time after creating the request",
    )  # fmt: skip
    sandbox.add_argument("--trickle-interval", type=float, default=1.0, help="seconds between trickled bytes")
    sandbox.add_argument(
        "--keepalive-timeout", type=float, default=75.0, metavar="S",
        help="close a kept-alive connection idle for S seconds (default 75, as nginx; Apache's is 5)",
    )  # fmt: skip
    sandbox.add_argument(
        "--odd-error-rate", type=_probability, default=0.0,
        help="probability of an error answer whose message the API does not document",
    )  # fmt: skip
    sandbox.add_argument(
        "--connect-failed", type=_probability, default=0.0,
        help="probability of Apache Traffic Server's 502 'Could Not Connect' page, here before processing (ATS"
        " also answers it for some failures after the request was written)",
    )  # fmt: skip
    sandbox.add_argument(
        "--mixed-body", type=_probability, default=0.0,
        help="probability that a gateway put the previous request's body on this one (Caddy's retry with"
        " buffer_requests): that request is created again and answered for",
    )  # fmt: skip
    sandbox.add_argument(
        "--replay-rate", type=_probability, default=0.0,
        help="probability that a cache answers with the last success again and creates nothing (nginx"
        " proxy_cache_methods POST)",
    )  # fmt: skip
    sandbox.add_argument("--tls-cert", type=Path, help="serve https with this certificate (PEM; needs --tls-key)")
    sandbox.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    sandbox.add_argument(
        "--limit-schedule", type=_schedule, default=(), metavar="S:N,...",
        help="a sliding-window limit that changes: N requests/s from S seconds after start, e.g. 0:100,20:50,40:150",
    )  # fmt: skip
    sandbox.add_argument("--rate-headers", action="store_true", help="state the limit in RateLimit-* headers")
    sandbox.add_argument(
        "--leaky-rate", type=float, help="nginx limit_req instead: requests/s, 429 without Retry-After past the burst"
    )
    sandbox.add_argument("--leaky-burst", type=int, default=10, help="the leaky bucket's burst (default 10)")
    sandbox.add_argument(
        "--leaky-status", type=int, choices=(429, 503), default=429,
        help="what the leaky bucket answers past its burst: 429, or 503 as nginx does by default",
    )  # fmt: skip
    sandbox.add_argument(
        "--leaky-delay", action="store_true",
        help="the leaky bucket delays requests over its rate (up to the burst) instead of passing them at once,"
        " as nginx limit_req without nodelay",
    )  # fmt: skip
    sandbox.add_argument("--seed", type=int, help="seed for repeatable faults")
    sandbox.add_argument("--record", type=Path, help="append every created SI request to this file (JSON lines)")


def _probability(value: str) -> float:
    try:
        p = float(value)
    except ValueError:
        p = -1.0
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability between 0 and 1, not {value!r}")
    return p


def _statuses(
    value: str, allowed: tuple[int, ...] = tuple(range(500, 600)), like: str = "500,502,503"
) -> tuple[int, ...]:
    try:
        statuses = tuple(int(v) for v in value.split(","))
    except ValueError:
        statuses = ()
    if not statuses or not all(s in allowed for s in statuses):
        kind = "5xx statuses" if len(allowed) == 100 else "statuses among " + ",".join(map(str, allowed))
        raise argparse.ArgumentTypeError(f"must be comma-separated {kind}, like {like}, not {value!r}")
    return statuses


def _after_statuses(value: str) -> tuple[int, ...]:
    return _statuses(value, (301, 302, 303, 500, 502, 503, 504), "500,502,504")


def _schedule(value: str) -> tuple[tuple[float, int], ...]:
    try:
        steps = tuple((float(at), int(limit)) for at, _, limit in (part.partition(":") for part in value.split(",")))
    except ValueError:
        steps = ()
    if not steps or any(at < 0 or limit < 1 for at, limit in steps):
        raise argparse.ArgumentTypeError(f"must be SECONDS:LIMIT pairs, like 0:100,20:50, not {value!r}")
    return steps


def _range_ms(value: str) -> tuple[float, float]:
    try:
        low, _, high = value.partition("-")
        pair = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be MIN-MAX milliseconds, like 5-50, not {value!r}") from None
    if not 0 <= pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"must be MIN-MAX milliseconds with 0 <= MIN <= MAX, not {value!r}")
    return pair
