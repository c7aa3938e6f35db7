"""One config value at a time: its type, range, file or URL, checked and normalised on load.

config.py reads the TOML file and the flags into frozen dataclasses; every value passes
through `check_value` on the way, so a bad one stops the run before any request with one line
naming the file, the key and what it must be.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import ssl
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError, reason_of


def check_value(section: str, key: str, value: Any, where: str) -> Any:
    """Check one value against its field's type and bounds; return it normalised."""
    name = f"{section}.{key}"
    if key == "rate":
        if value == "auto":
            return "auto"
        value = number(name, value, where)
        if not 1 <= value <= 100_000:
            raise ConfigError(
                f"{where}: '{name}' must be 'auto' or a number of requests per second from 1 to 100000, not {value}"
            )
        return value
    if key in ("concurrency", "max_attempts", "chunk_rows", "breaker"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: '{name}' must be a whole number, not {value!r}")
        upper = {"concurrency": 1000, "max_attempts": 100, "chunk_rows": 10_000_000, "breaker": 100_000}[key]
        lower = 0 if key == "breaker" else 1
        if not lower <= value <= upper:
            raise ConfigError(f"{where}: '{name}' must be between {lower} and {upper}, not {value}")
        return value
    if key == "progress_every":
        value = number(name, value, where)
        if not 0.1 <= value <= 3600:
            raise ConfigError(f"{where}: '{name}' must be a number of seconds from 0.1 to 3600, not {value}")
        return value
    if key == "log_level":
        if value not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"{where}: '{name}' must be debug, info, warning or error, not {value!r}")
        return value
    if key in ("summary_json", "report_html"):
        if not isinstance(value, (str, Path)) or not str(value):
            raise ConfigError(f"{where}: '{name}' must be a file path")
        path = Path(value)
        if not path.parent.is_dir():
            raise ConfigError(f"{where}: the folder of '{name}' {path} does not exist")
        return path
    if key in ("connect_timeout", "read_timeout", "keepalive_timeout", "backoff_base", "backoff_cap"):
        value = number(name, value, where)
        if not 0 < value <= 3600:
            raise ConfigError(f"{where}: '{name}' must be a number of seconds in (0, 3600], not {value}")
        return value
    if key == "ca_bundle":
        if not isinstance(value, (str, Path)) or not str(value):
            raise ConfigError(f"{where}: '{name}' must be the path of a PEM file of CA certificates")
        try:
            ssl.create_default_context().load_verify_locations(cafile=str(value))
        except (OSError, ssl.SSLError) as exc:
            reason = reason_of(exc)
            raise ConfigError(
                f"{where}: '{name}' {value!s} is not a readable PEM file of CA certificates: {reason}"
            ) from None
        return Path(value)
    if key in (
        "resend_unknown",
        "fsync",
        "dry_run",
        "retry_gateway_errors",
        "retry_503",
        "check_echo",
        "normalize_case",
    ):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: '{name}' must be true or false, not {value!r}")
        return value
    if key == "log_format":
        if value not in ("json", "console"):
            raise ConfigError(f'{where}: \'{name}\' must be "json" or "console", not {value!r}')
        return value
    if key == "results":
        if not isinstance(value, (str, Path)) or not str(value):
            raise ConfigError(f"{where}: '{name}' must be a file path")
        path = Path(value)
        if not (path.name.endswith(".csv") or path.name.endswith(".parquet")):
            raise ConfigError(f"{where}: '{name}' must end in .csv or .parquet, not {path.name!r}")
        return path
    if key == "datetime_formats":
        if not isinstance(value, list) or not all(isinstance(v, str) and "%" in v for v in value):
            raise ConfigError(f"{where}: '{name}' must be a list of strftime patterns like \"%d/%m/%Y %H:%M\"")
        for pattern in value:
            datetime_format(pattern, f"{where}: '{name}'")
        return tuple(value)
    if key == "sir_statuses":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: '{name}' must be a non-empty list of strings")
        return tuple(value)
    if key.endswith("_env"):
        return env_name(value, f"{where}: '{name}'")
    if key == "default_org_id":
        if not isinstance(value, str) or not UUID.fullmatch(value.strip()):
            raise ConfigError(f"{where}: '{name}' must be the org's UUID, not {value!r}")
        return value.strip()
    if key == "base_url":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: '{name}' must be a non-empty string")
        return value.strip().rstrip("/")
    raise ConfigError(f"{where}: unknown key '{name}'")  # pragma: no cover - fields() guards this


_ZONE = re.compile(r"%[-_0^#:]*[zZ]")


def datetime_format(pattern: str, what: str) -> None:
    """A pattern si-ingest can read a time with and send unchanged: no time zone (the API takes
    the time as written; converting it moved a customer's 09:00+02:00 to 07:00), and one that
    reads back a time it writes (`%Q %d`, a typo, had made every row INVALID_DATETIME)."""
    import polars as pl  # the config is read before the loader needs it anyway

    if _ZONE.search(pattern):
        raise ConfigError(
            f"{what}: {pattern!r} reads a time zone, and the API takes the time as written (no zone): "
            "si-ingest does not convert times; export them without the zone"
        )
    sample = pl.Series([datetime(2026, 4, 5, 9, 7, 3)])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pl.exceptions.PolarsWarning)
            pl.Series(["2026"]).str.strptime(pl.Datetime, pattern, strict=False)  # polars' own advice, below
    except pl.exceptions.PolarsWarning as warning:  # `.%f` (Python's spelling): raw warning lines, every batch
        raise ConfigError(f"{what}: {pattern!r}: {str(warning).split(' See ')[0]}") from None
    try:
        text = sample.dt.strftime(pattern)
        parsed = text.str.strptime(pl.Datetime, pattern, strict=False)
        back = parsed.dt.strftime(pattern)
        readable = back.null_count() == 0 and back[0] == text[0] and parsed.dt.date()[0] == sample.dt.date()[0]
    except (pl.exceptions.PolarsError, ValueError):
        readable = False
    if not readable:
        raise ConfigError(
            f"{what}: {pattern!r} cannot read back a time it writes (a typo? a date without its year, day or"
            " month?); see the strftime codes"
        )


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # what env, Docker and Kubernetes can set
PLAIN_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")  # a name printed as it is; any other may be a key
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def env_name(value: object, what: str) -> str:
    """The name of an environment variable. Anything else is refused without being repeated: a
    key written where its variable's name belongs had been printed ("set <the key> in the
    environment") into the cron log."""
    if not isinstance(value, str) or not ENV_NAME.fullmatch(value.strip()):
        raise ConfigError(
            f"{what} must name an environment variable (letters, digits, _ . and -, like ZYNTRO_API_KEY), not hold"
            " a value; the value given is not repeated here, in case it is a credential"
        )
    return value.strip()


def did_you_mean(key: str, known: list[str], prefix: str = "") -> str:
    """'; did you mean X?' for the closest known key, else the list of known keys."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    return f" (known: {', '.join(known)})"


def number(name: str, value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: '{name}' must be a number, not {value!r}")
    return float(value)


def check_base_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"base URL {url!r} must be an http(s):// URL with a host")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            f"base URL {url!r} uses plain http:// for a non-loopback host;"
            " use https:// (credentials travel in the body)"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"base URL {url!r} must not carry a user, password, query or fragment")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
