"""si-ingest: load, validate and submit planned CRM actions to Zyntro's addSIRequest API."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Config, Credentials, load_config, load_credentials
from .models import ErrorCode, Outcome, Row, Status
from .runner import RunResult, run

__all__ = [
    "Config",
    "Credentials",
    "ErrorCode",
    "Outcome",
    "Row",
    "RunResult",
    "Status",
    "load_config",
    "load_credentials",
    "run",
]
