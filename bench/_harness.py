"""Shared bits for the benchmarks: a sandbox process on a free loopback port, input rows, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import random
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from pipeline.sandbox import DEFAULT_API_KEY, DEFAULT_DEVELOPER_SECRET, DEFAULT_ORG_ID

ROOT = Path(__file__).resolve().parent.parent

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


def machine(libraries: Mapping[str, str]) -> dict[str, str]:
    """The date, the commit (and pipeline/'s own, dirty or not) and the machine, with `libraries`'
    versions after python's: the header of each section of bench/RESULTS.md."""
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = " plus uncommitted changes" if git("status", "--porcelain", "--", "pipeline") else ""
    pipeline_at = git("log", "-1", "--format=%h", "--", "pipeline")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": f"{git('rev-parse', '--short', 'HEAD')} (pipeline/ as of {pipeline_at}{dirty})",
        "nproc": str(os.cpu_count()),
        "RAM": f"{int(mem) / 2**20:.1f} GiB",
        "python": platform.python_version(),
        **libraries,
        "kernel": platform.release(),
    }
