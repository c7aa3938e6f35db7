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


SEND_BEGIN = "<!-- send_memory: begin (bench/send_memory.py rewrites this section) -->"
SEND_END = "<!-- send_memory: end -->"
_SECTIONS = {"send": (SEND_BEGIN, SEND_END), "rate": (RATE_BEGIN, RATE_END)}  # in this order, after the ledger part


def write_results_md(
    dest: Path, text: str, *, rate_section: str | None = None, send_section: str | None = None
) -> None:
    """Write bench/RESULTS.md: `text` (the ledger scale part), then the send memory and Rate
    sections between their markers. Each benchmark passes its own part; the others are kept
    from the file as they are."""
    old = dest.read_text() if dest.exists() else ""
    kept: dict[str, str] = {}
    for name, (begin, end) in _SECTIONS.items():
        if begin in old and end in old:
            head, rest = old.split(begin, 1)
            kept[name] = begin + rest.split(end, 1)[0] + end
            old = head.rstrip("\n") + "\n" + rest.split(end, 1)[1].lstrip("\n")
    new = {"send": send_section, "rate": rate_section}
    parts = [text if text else old]
    parts += [section for name in _SECTIONS if (section := new[name] if new[name] is not None else kept.get(name))]
    dest.write_text("\n\n".join(p.strip("\n") for p in parts if p.strip()) + "\n")


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
