"""Writing the tool's own temporary files: the disk's refusal is one readable line, not a crash.

polars reports a failed write as a ComputeError, not an OSError, and its text depends on where
the write broke: a full disk gave "underlying IO error: No space left on device (os error 28)"
for one file and "Invalid thrift: transport error" for another. So every polars error of such
a write is reported as the disk's (LedgerError, exit 2), as the ledger snapshot writer does:
the planner's spills, key runs and verdicts, `ledger repair`'s runs and `report --errors`'
parts all go through here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from .errors import Interrupted, LedgerError, reason_of


def write_work_file(path: Path, write: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """`write(*args, **kwargs)`, which writes `path`; an OSError or polars error -> LedgerError."""
    try:
        write(*args, **kwargs)
    except (OSError, pl.exceptions.PolarsError) as exc:
        if isinstance(exc.__cause__, Interrupted):  # a signal's, raised in a callback polars ran
            raise exc.__cause__ from None
        raise LedgerError(f"cannot write work file {path}: {reason_of(exc)}") from exc
