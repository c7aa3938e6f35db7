"""An unexpected error (a bug): a crash report file with the traceback, secrets scrubbed; exit 4."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from . import __version__
from .logs import REDACTOR

EXIT_INTERNAL = 4


def write_report(exc: BaseException, argv: Sequence[str]) -> Path:
    """Write the report in the current folder, else the temp folder; returns its path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"si-ingest-crash-{stamp}-{os.getpid()}.txt"
    text = "\n".join(
        [
            f"si-ingest {__version__} internal error at {stamp}",
            f"python {platform.python_version()} on {platform.platform()}",
            f"arguments: {' '.join(argv)}",
            "",
            "".join(traceback.format_exception(exc)),
        ]
    )
    text = REDACTOR.scrub_text(text)
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        path = folder / name
        try:
            path.write_text(text)
        except OSError:
            continue
        return path.resolve()
    sys.stderr.write(text)
    return Path("(stderr: no folder was writable)")
