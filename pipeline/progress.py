"""Live progress: a rich progress bar on a terminal, a JSON line every few seconds off one.

On a terminal the bar shows rows done of the rows to send, created / rejected / failed /
unknown so far, requests/s lately, the rate limit and an ETA; log lines print above it (rich
redirects stderr while the bar is live, and the log renderer writes to whatever stderr is
then). Off a terminal (cron, Kubernetes, CI) every stderr line is a JSON object: a
`run.progress` line comes at the start and every `--progress-every` seconds.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

log = structlog.get_logger("si_ingest.run")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot for the progress display."""

    done: int  # rows with a final outcome this run
    total: int  # rows to send
    outcomes: dict[str, int]
    requests: int
    rate: float  # requests/s lately
    rate_limit: float
    in_flight: int

    @property
    def eta_seconds(self) -> float | None:
        left = self.total - self.done
        return left / self.rate if self.rate > 0 and left > 0 else None


BAR_EVERY = 0.25  # seconds between two redraws of the bar


class Display(Protocol):
    every: float  # seconds between two snapshots

    def __enter__(self) -> Display: ...
    def __exit__(self, *exc: object) -> None: ...
    def __call__(self, snapshot: Snapshot) -> None: ...


class JsonLines:
    """A `run.progress` log line per snapshot."""

    def __init__(self, every: float) -> None:
        self.every = every

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, snapshot: Snapshot) -> None:
        eta = snapshot.eta_seconds
        log.info(
            "run.progress",
            done=snapshot.done,
            to_send=snapshot.total,
            **snapshot.outcomes,
            requests=snapshot.requests,
            requests_per_s=snapshot.rate,
            rate_limit=snapshot.rate_limit,
            in_flight=snapshot.in_flight,
            eta_s=round(eta) if eta is not None else None,
        )


class Bar:
    """rich's progress bar on stderr; log lines go above it."""

    def __init__(self, total: int) -> None:
        self.every = BAR_EVERY
        self._console = Console(stderr=True)
        self._bar = RichProgress(
            TextColumn("[bold]sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[rates]}"),
            TimeRemainingColumn(),
            console=self._console,
            redirect_stderr=True,
            redirect_stdout=False,
            transient=False,
        )
        self._task: TaskID = self._bar.add_task("send", total=total, counts="", rates="")

    def __enter__(self) -> Bar:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def __call__(self, snapshot: Snapshot) -> None:
        o = snapshot.outcomes
        counts = (
            f"[green]{o.get('created', 0)} created[/] [yellow]{o.get('rejected', 0)} rejected[/] "
            f"[red]{o.get('failed', 0)} failed[/] [magenta]{o.get('unknown', 0)} unknown[/]"
        )
        rates = f"{snapshot.rate:.0f}/s (limit {snapshot.rate_limit:.0f}/s)"
        self._bar.update(self._task, completed=snapshot.done, total=snapshot.total, counts=counts, rates=rates)


def display_for(total: int, log_format: str | None, every: float, stream: Any = None) -> Display:
    """The bar when stderr is a terminal and logs are for humans, else JSON lines every `every` s."""
    stream = stream or sys.stderr
    if log_format != "json" and stream.isatty():
        return Bar(total)
    return JsonLines(every)
