"""SIGINT, SIGTERM and SIGHUP over a whole run: what each phase does with them.

- Before any request (loading, validating, planning; a run with nothing to send; all of a
  validate): the first signal raises Interrupted, the work folder is removed, exit 130.
- While sending, the event loop's handlers (sending.submit) count on the same tally: the first
  stops taking rows and finishes the requests in flight; a second stops at once.
- After the last request (the journal folded into the ledger, the results written, the seal):
  the first signal is noted and the run goes on to write the results, then exits 130; a second
  raises Interrupted at once. Everything sent is in the journal by then, so the next run renders
  what this one could not. Before this, SIGTERM had its default action there (killed, no
  results, the work folder left; the moment a scheduler's single SIGTERM is likeliest) and
  SIGINT skipped the results.

SIGHUP (the terminal gone) is a SIGTERM, unless the process started with it ignored (`nohup`),
which is left as it is. The handlers of the process are put back when the run ends.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import structlog

from .errors import Interrupted

log = structlog.get_logger("si_ingest.run")


class RunSignals:
    """The run's signal count and phase, shared by the synchronous handler and the loop's."""

    def __init__(self) -> None:
        self.count = 0
        self.sent = False  # a request may have left: signals no longer stop at once
        self.handled: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
        self._previous: dict[int, Any] = {}

    @contextlib.contextmanager
    def installed(self) -> Iterator[RunSignals]:
        """The synchronous handler for the run's phases outside the event loop's."""
        hup = getattr(signal, "SIGHUP", None)
        if hup is not None and signal.getsignal(hup) != signal.SIG_IGN:  # nohup: left ignored
            self.handled = (*self.handled, hup)
        self._previous = {s: signal.signal(s, self.handler) for s in self.handled}
        try:
            yield self
        finally:
            for signum, old in self._previous.items():
                signal.signal(signum, old)
            self._previous = {}

    def reinstall(self) -> None:
        """After the event loop's handlers are removed (which leaves the default action)."""
        if self._previous:
            for signum in self.handled:
                signal.signal(signum, self.handler)

    def handler(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if not self.sent:
            raise Interrupted(f"interrupted by {name} before any request was sent")
        if self.count == 1:
            log.warning(
                "run.stopping",
                signal=name,
                detail="every request has finished; writing the results; signal again to stop at once",
            )
            return
        raise Interrupted(
            f"stopped by {name} while writing the results; every answer is in the ledger: "
            "rerun the same command to write them"
        )
