"""The console script's first code: SIGTERM is an interrupt from the very start.

Importing polars and numpy takes about half a second. Before this module, a SIGTERM in that
window killed the process with no word (143) and a SIGINT printed a KeyboardInterrupt
traceback from inside numpy. Here SIGTERM is made to raise KeyboardInterrupt, as SIGINT
does, before anything heavy is imported: an interrupt during the import is one line and
exit 130, and afterwards `cli.main` turns a KeyboardInterrupt into the same. The run's own
phases then install their handlers (planning: `runner._signals_interrupt`; sending: the
event loop's), which say more and finish the work in flight.

It also tunes polars' allocator. polars loads jemalloc with `dirty_decay_ms:500,muzzy_decay_ms:1000`
and appends `_RJEM_MALLOC_CONF` to that when set (polars/__init__.py; pola-rs/polars#18088),
the last setting winning. One arena instead of four per core, and freed pages returned within
250 ms, took 40-50 MB off the peak of `validate` (1M rows: ~350 -> ~300 MB RssAnon; 5M: ~370 ->
~325 MB) at no measurable cost in time (three runs each, bench/ledger_scale.py's inputs).
A value the user set is kept.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

EXIT_INTERRUPTED = 130
ALLOCATOR = "narenas:1,background_thread:true,dirty_decay_ms:250,muzzy_decay_ms:0"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR)  # before polars is imported
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
