"""Shared fixtures: the sandbox as a real process on a free port, input files, the CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import structlog

from pipeline.sandbox import DEFAULT_API_KEY, DEFAULT_DEVELOPER_SECRET, DEFAULT_ORG_ID

CREDENTIAL_ENV = {
    "ZYNTRO_API_KEY": DEFAULT_API_KEY,
    "ZYNTRO_DEVELOPER_SECRET": DEFAULT_DEVELOPER_SECRET,
    "ZYNTRO_ORG_ID": DEFAULT_ORG_ID,
}


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@dataclass
class SandboxProcess:
    url: str
    process: subprocess.Popen[str]
    record: Path
    log: Path

    @property
    def root(self) -> str:
        return self.url.split("/apis/")[0]

    def _get(self, path: str) -> Any:
        # the harness reading its own loopback sandbox (self-signed in the TLS tests)
        context = ssl._create_unverified_context() if self.root.startswith("https") else None
        with urllib.request.urlopen(self.root + path, timeout=10, context=context) as resp:
            return json.load(resp)

    def stats(self) -> dict[str, Any]:
        return self._get("/_sandbox/stats")

    def reset(self) -> None:
        context = ssl._create_unverified_context() if self.root.startswith("https") else None
        request = urllib.request.Request(self.root + "/_sandbox/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            assert resp.status == 204

    def created(self) -> list[dict[str, Any]]:
        return self._get("/_sandbox/requests")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="session")
def _sandbox_pool(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[tuple[str, ...], list[SandboxProcess]], Path]]:
    """Sandboxes by their flags, kept for the session (each test worker its own) and stopped at
    its end: a sandbox process costs about 0.5 CPU-s to start, and some 100 tests use one."""
    pool: dict[tuple[str, ...], list[SandboxProcess]] = {}
    yield pool, tmp_path_factory.mktemp("sandboxes")
    for boxes in pool.values():
        for box in boxes:
            box.stop()


@pytest.fixture
def sandbox(_sandbox_pool) -> Iterator[Callable[..., SandboxProcess]]:  # type: ignore[no-untyped-def]
    """Factory: `si-ingest sandbox --port 0 ARGS...` as it starts, for this test alone: one kept
    from an earlier test with the same flags, reset (`POST /_sandbox/reset`), or a new one."""
    pool, folder = _sandbox_pool
    taken: list[SandboxProcess] = []

    def start(*args: str) -> SandboxProcess:
        kept = pool.setdefault(tuple(args), [])
        for box in kept:
            if all(box is not other for other in taken) and box.process.poll() is None:
                box.reset()
                taken.append(box)
                return box
        n = sum(len(boxes) for boxes in pool.values())
        record, log = folder / f"sandbox{n}.jsonl", folder / f"sandbox{n}.log"
        with open(log, "w") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "sandbox", "--port", "0", "--record", str(record), *args],
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
            )
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("sandbox listening on "):
            process.kill()
            raise RuntimeError(f"sandbox did not start: {line!r} {log.read_text()}")
        box = SandboxProcess(line.split()[-1], process, record, log)
        kept.append(box)
        taken.append(box)
        return box

    yield start


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def event(self, name: str) -> dict[str, Any]:
        return next(e for e in self.events if e.get("event") == name)


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120) -> CliResult:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ZYNTRO_")}
    full_env.update(CREDENTIAL_ENV if env is None else env)
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )
    events = []
    for line in proc.stderr.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return CliResult(proc.returncode, proc.stdout, proc.stderr, events)


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    return run_cli


def make_rows(n: int, seed: int = 1, prefix: str = "row") -> dict[str, list[str]]:
    """n valid rows for the default org, each with a unique sir_context (so server records map back)."""
    rng = random.Random(seed)
    return {
        "contact_id": [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)],
        "sir_flag": [rng.choice(["keep_warm", "form_action_email", "engagement_signal"]) for _ in range(n)],
        "sir_channel": ["email"] * n,
        "sir_context": [f"{prefix} {i}" for i in range(n)],
        "sir_planned_dt": [f"2026-12-{1 + i % 28:02d} {8 + i % 10:02d}:00:00" for i in range(n)],
    }


@pytest.fixture
def write_input(tmp_path: Path) -> Callable[..., Path]:
    def write(name: str, rows: dict[str, list[Any]] | pl.DataFrame) -> Path:
        frame = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows)
        path = tmp_path / name
        if name.endswith(".parquet"):
            frame.write_parquet(path)
        else:
            frame.write_csv(path)
        return path

    return write


def server_contexts(box: SandboxProcess) -> list[str]:
    return [r["sir_context"] for r in box.created()]


def wait_for(predicate: Callable[[], bool], timeout: float = 10, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """(key, cert) of a self-signed certificate for localhost and 127.0.0.1, made with the openssl CLI."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert
