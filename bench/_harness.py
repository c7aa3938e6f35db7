"""Shared bits for the benchmarks: a sandbox process on a free loopback port, input rows, the CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import polars as pl

from pipeline.sandbox import DEFAULT_API_KEY, DEFAULT_DEVELOPER_SECRET, DEFAULT_ORG_ID

ENV = {k: v for k, v in os.environ.items() if not k.startswith("ZYNTRO_")} | {
    "ZYNTRO_API_KEY": DEFAULT_API_KEY,
    "ZYNTRO_DEVELOPER_SECRET": DEFAULT_DEVELOPER_SECRET,
    "ZYNTRO_ORG_ID": DEFAULT_ORG_ID,
}


class SandboxProc:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "sandbox", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.url = self.proc.stdout.readline().split()[-1]
        self.root = self.url.split("/apis/")[0]

    def get(self, path: str):
        with urllib.request.urlopen(self.root + path, timeout=30) as resp:
            return json.load(resp)

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


def write_rows(path: Path, n: int, seed: int = 1) -> Path:
    rng = random.Random(seed)
    pl.DataFrame(
        {
            "contact_id": [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)],
            "sir_flag": ["keep_warm"] * n,
            "sir_channel": ["email"] * n,
            "sir_context": [f"bench row {i}" for i in range(n)],
            "sir_planned_dt": ["2026-12-01 09:00:00"] * n,
        }
    ).write_csv(path)
    return path


RATE_BEGIN = "<!-- bench_rate: begin (bench/bench_rate.py rewrites this section) -->"
RATE_END = "<!-- bench_rate: end -->"


def write_results_md(dest: Path, text: str, *, rate_section: str | None = None) -> None:
    """Write bench/RESULTS.md: `text` (the ledger scale part), then the Rate section between its
    markers. Each benchmark passes its own part; the other's is kept from the file as it is."""
    old = dest.read_text() if dest.exists() else ""
    kept = ""
    if RATE_BEGIN in old and RATE_END in old:
        head, rest = old.split(RATE_BEGIN, 1)
        kept = RATE_BEGIN + rest.split(RATE_END, 1)[0] + RATE_END + "\n"
        old = head.rstrip("\n") + "\n" + rest.split(RATE_END, 1)[1].lstrip("\n")
    ledger = text if text else old
    rate = rate_section if rate_section is not None else kept
    dest.write_text(ledger.rstrip("\n") + "\n" + ("\n" + rate.rstrip("\n") + "\n" if rate else ""))


def cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **kwargs,
    )
