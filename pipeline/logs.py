"""structlog setup: JSON lines or console on stderr, with every credential redacted."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from .redact import REDACTED, scrub

_SECRET_KEYS = frozenset({"api_key", "developer_secret", "password", "secret", "authorization"})


class Redactor:
    """A processor that blanks credential keys and every occurrence of a secret's value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = tuple(s for s in secrets if s)

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in list(event.items()):
            if key.lower() in _SECRET_KEYS:
                event[key] = REDACTED
            else:
                event[key] = self._scrub(value)
        return event

    def scrub_text(self, text: str) -> str:
        return scrub(text, self.secrets)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, (list, tuple)):
            return type(value)(self._scrub(v) for v in value)
        if isinstance(value, dict):
            return {k: REDACTED if str(k).lower() in _SECRET_KEYS else self._scrub(v) for k, v in value.items()}
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return self._scrub(str(value))


REDACTOR = Redactor()


def _stderr_logger(*args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def configure(log_format: str | None, secrets: Iterable[str] = (), level: str = "info") -> None:
    """Set up structlog for the CLI. `secrets` are scrubbed from every event.

    Lines go to whatever sys.stderr is when they are written (a progress bar redirects it
    while live, and prints them above itself).
    """
    REDACTOR.secrets = tuple(s for s in secrets if s)
    if log_format is None:
        log_format = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if log_format == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            REDACTOR,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
