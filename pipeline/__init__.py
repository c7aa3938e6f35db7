"""si-ingest: load, validate and submit planned CRM actions to Zyntro's addSIRequest API.

Library use (an Airflow or Dagster task): `result = await pipeline.run(inputs, config,
credentials)`; `result.exit_code` is the CLI's and `result.document` the summary JSON
(README "Scheduling and library use"). Bad input, config or ledger raise PipelineError.

The names below load on first use (PEP 562): importing the package stays cheap, so the
command line's first code (`entry.py`) runs before polars is imported and a signal in that
first half second ends the run like any other signal before a request.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .config import Config, Credentials, load_config, load_credentials
    from .errors import PipelineError
    from .models import ErrorCode, Outcome, Row, Status
    from .runner import RunResult, run

_HOMES = {
    "Config": "config",
    "Credentials": "config",
    "load_config": "config",
    "load_credentials": "config",
    "PipelineError": "errors",
    "ErrorCode": "models",
    "Outcome": "models",
    "Row": "models",
    "Status": "models",
    "RunResult": "runner",
    "run": "runner",
}

__all__ = [
    "Config",
    "Credentials",
    "ErrorCode",
    "Outcome",
    "PipelineError",
    "Row",
    "RunResult",
    "Status",
    "load_config",
    "load_credentials",
    "run",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value
