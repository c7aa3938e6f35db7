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
which is left as it is. A signal someone else handles (a library caller's own handler, say an
Airflow worker's loop.add_signal_handler) is left to them. The handlers are put back when the
run ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

from .errors import Interrupted

# the signals that stop a run: SIGHUP (the terminal gone) counts as SIGTERM where there is one
RUN_SIGNALS = (signal.SIGINT, signal.SIGTERM, *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()))
FINISHING = "every request has finished; writing the results; signal again to stop at once"


class RunSignals:
    """The run's signal count and phase, shared by the synchronous handler and the loop's."""

    def __init__(self) -> None:
        self.count = 0
        self.sent = False  # a request may have left: signals no longer stop at once
        self.handled: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
        self._previous: dict[int, Any] = {}
        self._deferring = False
        self._deferred: Interrupted | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[RunSignals]:
        """The synchronous handler for the run's phases outside the event loop's, for the signals
        nobody else handles (`_ours`): an ignored SIGHUP (nohup) stays ignored, and a library
        caller's own handlers (a host's `loop.add_signal_handler`) stay its own; replaced, then
        removed with the loop's, they had left the host's signal doing nothing at all."""
        self.handled = tuple(s for s in RUN_SIGNALS if _ours(signal.getsignal(s)))
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

    @contextlib.contextmanager
    def deferred(self, *, failing: bool = False) -> Iterator[None]:
        """A signal that would stop the run at once waits until the block is done: the work
        folder's removal, cut half way by a SIGTERM near the end of a validate, had left up to
        170 MB behind (2 of 68 random trials; found by a review, h11b). It is raised then, unless
        the run is `failing` already: its own error (exit 2, 4) tells more than 130."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        deferred, self._deferred = self._deferred, None
        if deferred is not None and not failing:
            raise deferred

    def handler(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if not self.sent:
            stop = Interrupted(f"interrupted by {name} before any request was sent")
            if self._deferring:
                self._deferred = self._deferred or stop
                return
            raise stop
        if self.count == 1:
            # written to the descriptor, not logged: the handler may have interrupted a log write
            # on this thread, and the logger's (and stderr queue's) locks are not reentrant
            with contextlib.suppress(OSError):
                os.write(2, f"si-ingest: {name}: {FINISHING}\n".encode())
            return
        raise Interrupted(
            f"stopped by {name} while writing the results; every answer is in the ledger: "
            "rerun the same command to write them"
        )


def after_the_run() -> None:
    """The run owes nothing more (results, seal, reports, summary line written): the command
    line's own handlers give way to its `note_late` for the event loop's shutdown and the
    printing that follow (a KeyboardInterrupt raised into that shutdown had left a thread's
    traceback). Anyone else's handlers are left as they are."""
    from .entry import note_late

    for signum in RUN_SIGNALS:
        if _the_command_lines(signal.getsignal(signum)):
            signal.signal(signum, note_late)


def _ours(handler: Any) -> bool:
    """A signal's handler the run may take over: the default action, Python's KeyboardInterrupt,
    or the command line's own (entry.py); not SIG_IGN, nor anyone else's."""
    return handler in (signal.SIG_DFL, signal.default_int_handler) or _the_command_lines(handler)


def _the_command_lines(handler: Any) -> bool:
    """A handler the command line put in place (entry.py)."""
    return callable(handler) and getattr(handler, "__module__", None) == "pipeline.entry"
