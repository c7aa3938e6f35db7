"""Journal (write-ahead, group-committed), resume index, results file and the run lock.

The journal `<results>.journal` is the tool's memory; it is append-only JSON lines:
    {"journal": "si-ingest", "version": 1}        header
    {"i": row_key}                                intent: the request is about to leave
    {"k": row_key, "s": status, ...}              outcome: what came back
The last record of a key wins. A key whose last record is an intent was maybe received by
the API and never answered (the process died): replay records it as `unknown`.

Never send what cannot be recorded: a worker sends only after its intent is written (and
fsynced, unless fsync is off) together with every other intent of the same event-loop tick:
one write() for the batch (group commit). Outcomes ride along with the next write. A write
error stops sending at once (LedgerError). A torn last line (killed mid-write) is cut off.

The results file is rendered from the input plan and the journal at the end of a run, to a
temporary file fsynced and renamed over the old one, so it is always whole. Compaction
rewrites the journal as one outcome per key the same way: a kill at any instant leaves
either the old journal or the new one, both complete.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from .errors import LedgerError, LockError
from .models import ErrorCode, Outcome, Status

HEADER = {"journal": "si-ingest", "version": 1}
STATE_SCHEMA: dict[str, Any] = {
    "row_key": pl.String,
    "status": pl.String,
    "sir_id": pl.Int64,
    "error_code": pl.String,
    "error_message": pl.String,
    "attempts": pl.Int64,
    "http_status": pl.Int64,
    "updated_at": pl.String,
}
_OUTCOME_FIELDS = (("sir_id", "id"), ("error_code", "c"), ("error_message", "m"), ("http_status", "h"))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def journal_path(results: Path) -> Path:
    return results.with_name(results.name + ".journal")


def encode_outcome(outcome: Outcome) -> bytes:
    record: dict[str, Any] = {"k": outcome.row_key, "s": outcome.status.value, "n": outcome.attempts}
    for attr, short in _OUTCOME_FIELDS:
        value = getattr(outcome, attr)
        if value is not None:
            record[short] = value
    record["t"] = outcome.updated_at or now_iso()
    return orjson.dumps(record) + b"\n"


def replay(path: Path) -> tuple[pl.DataFrame, list[str], int]:
    """Read a journal: (state, one row per key; keys left in flight; bytes of valid prefix).

    A last line without its newline is a write cut short by a kill: it is not counted.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return pl.DataFrame(schema=STATE_SCHEMA), [], 0
    except OSError as exc:
        raise LedgerError(f"cannot read journal {path}: {exc.strerror}; fix its permissions or move it away") from exc
    valid = data.rfind(b"\n") + 1
    last: dict[str, dict[str, Any] | None] = {}
    for line in data[:valid].splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        if "i" in record:
            last[record["i"]] = None
        elif "k" in record and "s" in record:
            last[record["k"]] = record
    in_flight = [key for key, record in last.items() if record is None]
    rows = [r for r in last.values() if r is not None]
    state = pl.DataFrame(
        {
            "row_key": [r["k"] for r in rows],
            "status": [r["s"] for r in rows],
            "sir_id": [r.get("id") for r in rows],
            "error_code": [r.get("c") for r in rows],
            "error_message": [r.get("m") for r in rows],
            "attempts": [r.get("n", 0) for r in rows],
            "http_status": [r.get("h") for r in rows],
            "updated_at": [r.get("t") for r in rows],
        },
        schema=STATE_SCHEMA,
    )
    return state, in_flight, valid


class Journal:
    """Append-only write-ahead journal with group commit on the event loop."""

    def __init__(self, path: Path, *, fsync: bool) -> None:
        self.path = path
        self._fsync = fsync
        self._fd: int | None = None
        self._buffer: list[bytes] = []
        self._has_intent = False
        self._commit: asyncio.Future[None] | None = None
        self._scheduled = False
        self.error: LedgerError | None = None
        self.writes = 0

    def open(self, valid_bytes: int) -> None:
        """Open for appending after cutting any torn tail; write the header to a new journal."""
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            if os.fstat(self._fd).st_size != valid_bytes:
                os.truncate(self._fd, valid_bytes)
            if valid_bytes == 0:
                self._write(orjson.dumps(HEADER) + b"\n", sync=True)
        except OSError as exc:
            raise LedgerError(f"cannot write journal {self.path}: {exc.strerror}") from exc

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def intent(self, row_key: str) -> None:
        """Return once `row_key` is durably marked in flight; raises LedgerError if it cannot be."""
        if self.error is not None:
            raise self.error
        self._buffer.append(orjson.dumps({"i": row_key}) + b"\n")
        self._has_intent = True
        if self._commit is None:
            self._commit = asyncio.get_running_loop().create_future()
        commit = self._commit
        self._schedule()
        await asyncio.shield(commit)

    def outcome(self, outcome: Outcome) -> None:
        """Queue an outcome; it is written with the next group commit (this loop tick)."""
        self._buffer.append(encode_outcome(outcome))
        self._schedule()

    def flush(self) -> None:
        """Write everything queued now (also called at shutdown, outside the loop's ticks)."""
        self._scheduled = False
        commit, self._commit = self._commit, None
        if not self._buffer:
            if commit is not None and not commit.done():
                commit.set_result(None)
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        sync, self._has_intent = self._has_intent and self._fsync, False
        try:
            if self.error is not None:
                raise self.error
            self._write(data, sync=sync)
        except (OSError, LedgerError) as exc:
            if self.error is None:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                self.error = LedgerError(f"cannot write journal {self.path}: {reason}; stopped sending")
            if commit is not None and not commit.done():
                commit.set_exception(self.error)
            return
        if commit is not None and not commit.done():
            commit.set_result(None)

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def _write(self, data: bytes, *, sync: bool) -> None:
        if self._fd is None:
            raise LedgerError(f"journal {self.path} is closed")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if sync:
            os.fsync(self._fd)
        self.writes += 1


def compact(path: Path, state: pl.DataFrame) -> None:
    """Rewrite the journal as one outcome per key, atomically (temp file, fsync, rename)."""
    tmp = path.with_name(path.name + ".compact")
    try:
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(HEADER) + b"\n")
            for r in state.iter_rows(named=True):
                fh.write(
                    encode_outcome(
                        Outcome(
                            r["row_key"],
                            Status(r["status"]),
                            r["sir_id"],
                            r["error_code"],
                            r["error_message"],
                            r["attempts"] or 0,
                            r["http_status"],
                            r["updated_at"],
                        )
                    )
                )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LedgerError(f"cannot compact journal {path}: {exc.strerror}") from exc


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dangling_outcomes(in_flight: list[str]) -> list[Outcome]:
    """Outcomes for keys a killed run left in flight: maybe received by the API, so `unknown`."""
    stamp = now_iso()
    return [
        Outcome(
            key,
            Status.UNKNOWN,
            error_code=ErrorCode.NO_ANSWER_RECORDED,
            error_message="the request may have reached the API, but the run stopped before its answer was recorded",
            updated_at=stamp,
        )
        for key in in_flight
    ]


class RunLock:
    """One run per results file: an flock on `<results>.lock`, released by the kernel on any exit.

    A lock file left by a killed process holds no flock, so the next run simply takes it over.
    """

    def __init__(self, results: Path) -> None:
        self.path = results.with_name(results.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LedgerError(f"cannot create lock file {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise LockError(
                f"another si-ingest run ({holder}) is using {self.path.name[:-5]}; wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {stamp}".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
