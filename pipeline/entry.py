"""The console script's first code: SIGTERM is an interrupt from the very start.

Importing polars and numpy takes about half a second. Before this module, a SIGTERM in that
window killed the process with no word (143) and a SIGINT printed a KeyboardInterrupt
traceback from inside numpy. Here SIGTERM is made to raise KeyboardInterrupt, as SIGINT
does, before anything heavy is imported: an interrupt during the import is one line and
exit 130, and afterwards `cli.main` turns a KeyboardInterrupt into the same. The run's own
phases then install their handlers (planning: `runner._signals_interrupt`; sending: the
event loop's), which say more and finish the work in flight.

numpy (csv_blocks' record scan) starts OpenBLAS threads that spin for ~0.1 CPU-s at import,
though the tool makes no BLAS call: one is enough (the user's own setting wins), which gives
the CPU to the run (and, on loopback, to the sandbox it sends to).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

EXIT_INTERRUPTED = 130


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: see the docstring
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt as exc:
        _interrupted(exc, "while starting; nothing was read or sent")
    try:
        cli_main(argv)
    except KeyboardInterrupt as exc:  # between the import and cli.main's own handling of it
        _interrupted(exc, "before any request was sent")


def _interrupted(exc: KeyboardInterrupt, when: str) -> None:
    name = exc.args[0] if exc.args else "SIGINT"
    print(f"si-ingest: interrupted by {name} {when}", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)
