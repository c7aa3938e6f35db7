"""si-ingest: load, validate and submit planned CRM actions to Zyntro's addSIRequest API.

Library use (an Airflow or Dagster task): `result = await pipeline.run(inputs, config,
credentials)`; `result.exit_code` is the CLI's and `result.document` the summary JSON
(README "Scheduling and library use"). Bad input, config or ledger raise PipelineError.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Config, Credentials, load_config, load_credentials
from .errors import PipelineError
from .models import ErrorCode, Outcome, Row, Status
from .runner import RunResult, run

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
