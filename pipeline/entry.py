"""The console script's first code: SIGTERM is an interrupt from the very start.

Importing polars and numpy takes about half a second. Before this module, a SIGTERM in that
window killed the process with no word (143) and a SIGINT printed a KeyboardInterrupt
traceback from inside numpy. Here SIGTERM is made to raise KeyboardInterrupt, as SIGINT
does, before anything heavy is imported: an interrupt during the import is one line and
exit 130, and afterwards `cli.main` turns a KeyboardInterrupt into the same. The run's own
phases then install their handlers (stopping.py; while sending, the event loop's), which say
more and finish the work in flight. SIGINT gets the same handler for the same reason and one
more: over Python's default handler, `asyncio.run` puts its own, which cancels the run at once
(every request in flight left `unknown`, no results written).

Descriptors 0-2 closed at start are put on /dev/null (`_open_standard_streams`). stdout and
stderr are wrapped so that a write never raises (and stderr so that one never blocks:
`_Queued`): a log reader that goes away (a
closed pipe) or a full disk under `2>>run.log` stopped a run mid-send (the error escaped the
progress task and cancelled every worker, exit 1); now the output goes to /dev/null from then
on and the run finishes, its results and ledger whole.

numpy (csv_blocks' record scan) starts OpenBLAS threads that spin for ~0.1 CPU-s at import,
though the tool makes no BLAS call: one is enough (the user's own setting wins), which gives
the CPU to the run (and, on loopback, to the sandbox it sends to).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any, TextIO

EXIT_INTERRUPTED = 130


class _Tolerant:
    """A text stream whose writes never raise; after one fails, its descriptor points at /dev/null."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError):
            self._silence()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            self._silence()

    def _silence(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            _to_devnull(self._stream.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Queued:
    """stderr, written by a thread of its own: a write here never blocks.

    A reader of stderr that stops reading (a stalled log shipper, a Docker logging driver in
    blocking mode whose endpoint is down, a paused `| less`) filled the 64 KiB pipe, and the next
    log line blocked the event loop: sending stopped, and SIGTERM could not stop the run (its
    handler runs on that loop). Lines wait here instead, up to LIMIT of them; past that they are
    dropped and counted (the count is written when the reader is back). The thread writes the
    descriptor itself, unbuffered, so it holds no lock of Python's stream objects at exit. At
    exit the lines left are written while the reader keeps taking them, a second at a time (`close`).
    """

    LIMIT = 10_000

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._fd = stream.fileno()
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        self._lines: queue.Queue[str] = queue.Queue(self.LIMIT)
        self._dropped = 0
        self._thread = threading.Thread(target=self._drain, name="si-ingest-stderr", daemon=True)
        self._thread.start()

    def write(self, text: str) -> int:
        try:
            self._lines.put_nowait(text)
        except queue.Full:
            self._dropped += 1
        return len(text)

    def flush(self) -> None:
        pass  # written as soon as the thread can

    def close(self, idle_s: float = 1.0) -> None:
        """Wait until every line is written, as long as the reader takes one within `idle_s`."""
        left, since = self._lines.unfinished_tasks, time.monotonic()
        while left:
            time.sleep(0.01)
            if self._lines.unfinished_tasks < left:
                left, since = self._lines.unfinished_tasks, time.monotonic()
            elif time.monotonic() - since > idle_s:
                return

    def _drain(self) -> None:
        while True:
            text = self._lines.get()
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                text = f"si-ingest: {dropped} log line(s) dropped: stderr was not being read\n{text}"
            data = text.encode(self._encoding, "backslashreplace")
            try:
                while data:
                    data = data[os.write(self._fd, data) :]
            except OSError:  # the reader went away: /dev/null from now on (as _Tolerant does)
                with contextlib.suppress(OSError):
                    _to_devnull(self._fd)
            finally:
                self._lines.task_done()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _to_devnull(fd: int) -> None:
    """Point `fd` at /dev/null: what is written there from now on goes nowhere, without error."""
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def _queued(stream: Any) -> Any:
    try:
        stream.flush()
        stream.fileno()
    except (OSError, ValueError, AttributeError):  # not a real descriptor: written directly
        return stream
    return _Queued(stream)


_RAISED: list[str] = []  # the signals `_interrupt` raised, by name


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _RAISED.append(signal.Signals(signum).name)
    raise KeyboardInterrupt(_RAISED[-1])


def signal_name(exc: KeyboardInterrupt) -> str:
    """The signal behind a KeyboardInterrupt: its own argument, else the last one `_interrupt`
    raised (an import interrupted inside an extension module can come back as a bare
    KeyboardInterrupt: a SIGHUP had been reported as SIGINT), else SIGINT (Python's own)."""
    if exc.args:
        return str(exc.args[0])
    return _RAISED[-1] if _RAISED else "SIGINT"


def _open_standard_streams() -> None:
    """Descriptors 0-2 closed at start (`<&-`, `>&-`, `2>&-`, some daemonizers) are put on
    /dev/null: else the event loop's own descriptor lands on one, and uvloop (libuv) aborts when
    it closes it (exit 134 after every row was created), and a closed stderr is `sys.stderr`
    None, a crash before any request."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            _to_devnull(fd)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115 - for the process's life


def main(argv: Sequence[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not ignored (a shell's `cmd &`)
        # the command line's own, not Python's: asyncio.run installs its SIGINT handler (which
        # cancels the run: every request in flight `unknown`, no results) only over Python's
        # default, and the run's phases take over only handlers they know (stopping._ours)
        signal.signal(signal.SIGINT, _interrupt)
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:  # not under nohup
        signal.signal(signal.SIGHUP, _interrupt)
    code: int | str | None = 0
    try:
        try:
            _open_standard_streams()
            if not isinstance(sys.stderr, (_Tolerant, _Queued)):
                sys.stdout, sys.stderr = _Tolerant(sys.stdout), _queued(_Tolerant(sys.stderr))
            os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: see the docstring
            from .cli import main as cli_main
        except KeyboardInterrupt as exc:
            _interrupted(exc, "while starting; nothing was read or sent")
        try:
            cli_main(argv)
        except KeyboardInterrupt as exc:  # between the import and cli.main's own handling of it
            _interrupted(exc, "before any request was sent")
    except SystemExit as exc:
        code = exc.code
    finally:
        late = _quiet_signals()
        if isinstance(sys.stderr, _Queued):
            sys.stderr.close()
    sys.exit(EXIT_INTERRUPTED if late and code in (0, 1, None) else code)  # as late_exit_code


_LATE: list[int] = []  # signals noted after the run's work was done (`note_late`)
_OUTCOME: list[int] = []  # the run's own exit code, once it is known (`outcome_is`)


def outcome_is(code: int) -> None:
    """The run's exit code, as soon as it is known (before its last lines are printed)."""
    _OUTCOME[:] = [code]


def late_exit_code() -> int:
    """The exit code after a late signal: 130 where the run had ended 0 or 1 (or not yet said),
    else the run's own (2, 3, 4 tell a scheduler what went wrong; 130 had hidden an account
    error's 3 from a process stopped while it printed)."""
    code = _OUTCOME[-1] if _OUTCOME else None
    return EXIT_INTERRUPTED if code in (None, 0, 1) else code


LATE_GRACE_S = 2.0


def note_late(signum: int, frame: FrameType | None) -> None:
    """The handler once the run's work is done (stopping.RunSignals puts it in place of
    `_interrupt` as the run ends): a signal is noted, and the exit is 130, not raised as a
    KeyboardInterrupt into the event loop's shutdown (a thread's traceback, found by a review).
    Everything the run owed is written by then, so a process still there LATE_GRACE_S later
    (blocked writing its summary to a pipe nobody reads) exits 130 at once, as it does at a
    second signal: noting alone had left it for SIGKILL (found by a review, h8a)."""
    _LATE.append(signum)
    if len(_LATE) > 1:
        os._exit(late_exit_code())
    timer = threading.Timer(LATE_GRACE_S, lambda: os._exit(late_exit_code()))
    timer.daemon = True  # a process that finishes first exits as it would
    timer.start()


def _quiet_signals() -> list[int]:
    """From the end of the run on, SIGTERM, SIGINT and SIGHUP are noted, not raised, and at exit
    they are ignored: the interpreter puts the default action back for its own handlers as it
    shuts down, and two SIGTERMs just after the summary (a supervisor escalating) had killed it
    there, exit 143, after every result was written (found by a review, h7c)."""
    from .stopping import RUN_SIGNALS

    kept = [s for s in RUN_SIGNALS if signal.getsignal(s) not in (signal.SIG_IGN, None)]
    for signum in kept:
        signal.signal(signum, note_late)
    atexit.register(lambda: [signal.signal(s, signal.SIG_IGN) for s in kept])
    return _LATE


def _interrupted(exc: KeyboardInterrupt, when: str) -> None:
    name = signal_name(exc)
    print(f"si-ingest: interrupted by {name} {when}", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)
