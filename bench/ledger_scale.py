"""The ledger and planner at scale (issue 6), as ratios to polars alone measured in the same run.

    .venv/bin/python bench/ledger_scale.py            # full: 1M, 3M, 5M, 10M rows (~25 min, ~4 GB in /tmp)
    .venv/bin/python bench/ledger_scale.py --quick    # CI smoke run: small sizes, a few seconds, no RESULTS.md

What it measures, every command a subprocess whose peak memory is polled from
/proc/PID/status every 20 ms (RssAnon and VmRSS summed over the process and its children,
VmHWM per process, and ru_maxrss from wait4 as a cross-check):
1. baseline: polars alone, `pl.scan_csv(path, infer_schema=False).collect_batches(chunk_size=50_000)`
   counting rows, at every input size;
2. `si-ingest validate FILE --results OUT.csv` (`python -m pipeline`) at 1M and 5M rows, no ledger;
3. a finished 1M-row job rerun: `si-ingest run` against the sandbox must send 0 requests.
   The finished job's ledger is made either by a real run against the sandbox
   (`--finished-by run`, the default of a full run: 1M POSTs, about 2-3 minutes) or by the
   ledger package's own writer (`--finished-by write`, the default of --quick):
   `pipeline.ledger.store.write_state` from the input's row keys, computed by the planner's
   own functions (loader, validate, keys.row_key): the files a real run leaves past 250k
   keys (a snapshot of one record per key, a journal holding only its header; checked equal
   in keys, kp order and schema to a real run's at 300k rows), without the requests;
4. a ledger of N `created` records planned against the same N input rows (`validate`, which
   plans against the ledger without sending) at 1M, 3M and 10M: time linear, memory flat.
`--stages` also runs the 5M validate and the largest plan under bench/_stage_probe.py
(timers around each stage from the outside) and prints where time and memory go.
A full run writes bench/RESULTS.md and exits 1 if any target of issue 6 fails; --quick
(sizes far below the targets') only checks that every step works, and exits 0.
Wall times on these shared 2-core machines move with other load: the load average at the
start of each step and its CPU time are printed beside it. Dirty pages left by one step are
flushed (`sync`, untimed) before the next starts.
Inputs are generated with polars (unique contact UUIDs, ~80-character sir_context) in a
temp folder that is deleted at the end (`--keep` keeps it); nothing generated is committed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import polars_hash  # noqa: F401 - registers .chash

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import machine as harness_machine  # noqa: E402
from bench._harness import write_results_md  # noqa: E402
from pipeline import keys, loader  # noqa: E402
from pipeline.config import DEFAULT_CHUNK_ROWS  # noqa: E402
from pipeline.ledger.partition import in_partition, iter_parts, partition_count  # noqa: E402
from pipeline.ledger.store import LedgerPaths, write_state  # noqa: E402
from pipeline.models import SIR_CHANNELS, SIR_FLAGS, Status  # noqa: E402
from pipeline.sandbox import DEFAULT_API_KEY, DEFAULT_DEVELOPER_SECRET  # noqa: E402
from pipeline.validate import validate  # noqa: E402

ORG_ID = "5f0c2a9e-3b1d-4c8e-9a47-2d6b8e1f0c3a"
ENV = {k: v for k, v in os.environ.items() if not k.startswith("ZYNTRO_")} | {
    "ZYNTRO_API_KEY": DEFAULT_API_KEY,
    "ZYNTRO_DEVELOPER_SECRET": DEFAULT_DEVELOPER_SECRET,
    "ZYNTRO_ORG_ID": ORG_ID,
}
POLL_S = 0.02
M = 1_000_000

BASELINE = """
import sys
import polars as pl
rows = 0
for batch in pl.scan_csv(sys.argv[1], infer_schema=False).collect_batches(chunk_size=50_000):
    rows += batch.height
print(rows)
"""

# Issue 6, "Done when".
VALIDATE_ROWS_PER_S = 1_000_000
VALIDATE_PEAK_MB = 400
VALIDATE_FLAT = 0.15
RERUN_S = 3.0
RERUN_PEAK_MB = 400
PLAN_PEAK_MB = 500


# ---- inputs ---------------------------------------------------------------------------------

TOPICS = ("the annual plan", "a renewal quote", "onboarding", "the API add-on", "seat pricing", "a demo")
FORMS = ("pricing", "contact-us", "webinar", "trial signup", "newsletter")


def _rows(start: int, n: int) -> pl.DataFrame:
    """Rows start..start+n-1 of the generated input: deterministic, unique, all valid."""
    i = pl.int_range(start, start + n, dtype=pl.Int64, eager=True).alias("i")
    frame = pl.DataFrame(i).with_columns(h=pl.col("i").cast(pl.String).chash.sha2_256())
    h = pl.col("h")
    pick = h.str.slice(20, 4).str.to_integer(base=16)
    return frame.select(
        contact_id=pl.concat_str(
            h.str.slice(0, 8),
            pl.lit("-"),
            h.str.slice(8, 4),
            pl.lit("-4"),
            h.str.slice(13, 3),
            pl.lit("-a"),
            h.str.slice(17, 3),
            pl.lit("-"),
            pl.col("i").cast(pl.String).str.zfill(12),  # unique by construction (decimal digits are hex)
        ),
        sir_flag=pl.lit(pl.Series(SIR_FLAGS)).gather(pick % len(SIR_FLAGS)),
        sir_context=pl.format(
            "Follow-up {}: asked about {} on the {} form; send the details",
            pl.col("i").cast(pl.String).str.zfill(8),
            pl.lit(pl.Series(TOPICS)).gather((pick // 7) % len(TOPICS)),
            pl.lit(pl.Series(FORMS)).gather((pick // 11) % len(FORMS)),
        ),
        sir_planned_dt=(pl.lit(dt.datetime(2026, 12, 1, 8)) + pl.duration(minutes=pick * 3)).dt.strftime(
            "%Y-%m-%d %H:%M:%S"
        ),
        sir_channel=pl.lit(pl.Series(SIR_CHANNELS)).gather((pick // 13) % len(SIR_CHANNELS)),
    )


def write_input(path: Path, n: int, chunk: int = M) -> Path:
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        for start in range(0, n, chunk):
            _rows(start, min(chunk, n - start)).write_csv(fh, include_header=start == 0)
    tmp.rename(path)
    return path


def row_keys(path: Path) -> pl.DataFrame:
    """(row_key, order) of every row of `path`, by the planner's own loader, validator and key."""
    config_org = ORG_ID
    (file,) = loader.inspect([path], {}, config_org)
    parts = []
    order = 0
    for batch in loader.batches(file, DEFAULT_CHUNK_ROWS, config_org):
        checked = validate(batch, ["Pending"]).with_columns(keys.row_key())
        if checked["status"].null_count() != checked.height:
            raise SystemExit(f"{path}: generated rows failed validation")
        parts.append(checked.select("row_key", order=pl.int_range(order, order + checked.height, dtype=pl.Int64)))
        order += checked.height
    return pl.concat(parts)


def write_finished_ledger(csv: Path, results: Path) -> float:
    """The ledger a finished run leaves: one `created` record per row key; returns seconds taken."""
    start = time.perf_counter()
    keyed = row_keys(csv)
    stamp = dt.datetime(2026, 11, 27, 2, 15, tzinfo=dt.UTC)
    state = (
        keyed.select(
            "row_key",
            status=pl.lit(Status.CREATED.value),
            sir_id=pl.col("order") + 1_000_001,
            error_code=pl.lit(None, pl.String),
            error_message=pl.lit(None, pl.String),
            attempts=pl.lit(1, pl.Int64),
            http_status=pl.lit(200, pl.Int64),
            updated_at=(pl.lit(stamp) + pl.duration(microseconds=pl.col("order") * 250)).dt.strftime(
                "%Y-%m-%dT%H:%M:%S%.6fZ"
            ),
            legacy=pl.lit(False),
        )
        .with_columns(keys.partition_hash())
        .sort("kp")
    )
    del keyed

    def partitions() -> Iterator[pl.DataFrame]:
        for lo, hi in iter_parts(partition_count(state.height)):
            yield state.filter(in_partition(lo, hi))

    write_state(LedgerPaths(results), os.urandom(16).hex(), state.height, partitions)
    return time.perf_counter() - start


# ---- measuring a subprocess -----------------------------------------------------------------


@dataclass
class Measure:
    label: str
    rows: int
    seconds: float = 0.0
    anon_mb: float = 0.0  # peak of RssAnon summed over the process tree
    anon_at: float = 0.0  # seconds from start when that peak was seen (compare with events["plan.ready"])
    rss_mb: float = 0.0  # peak of VmRSS summed over the process tree
    hwm_mb: float = 0.0  # VmHWM (per process, summed over the tree)
    maxrss_mb: float = 0.0  # ru_maxrss from wait4
    cpu_s: float = 0.0  # user + system CPU seconds (wait4), less sensitive than wall time to other load
    load: float = 0.0  # 1-minute load average when it started (2 cores: > 0.5 means something else runs)
    exit_code: int = 0
    events: dict[str, float] = field(default_factory=dict)  # first time of each JSON log event, s from start
    stdout: str = ""
    log: list[dict[str, object]] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _tree(pid: int) -> list[int]:
    found, i = [pid], 0
    while i < len(found):
        p = found[i]
        i += 1
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    found.extend(int(c) for c in fh.read().split())
    return found


def _status(pid: int) -> dict[str, int]:
    out = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def measure(label: str, rows: int, argv: list[str], workdir: Path) -> Measure:
    """Run argv, polling its memory; its stderr is kept (JSON log lines) for stage timestamps."""
    m = Measure(label, rows)
    err_path = workdir / f"{label.replace(' ', '_')}.stderr"
    # The steps before wrote up to ~2.5 GB (a 5M validate's results, twice); their writeback,
    # still running, had slowed the next step by ~20% (bench/PROFILE.md, session 5). Flushed
    # here, untimed, so each step pays for its own writes only, as a nightly run would.
    os.sync()
    m.load = os.getloadavg()[0]
    with open(err_path, "wb") as err, tempfile.TemporaryFile() as out:
        wall0 = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=ENV, stdout=out, stderr=err, cwd=ROOT)
        hwm: dict[int, int] = {}
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                m.seconds = time.perf_counter() - start
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            anon = rss = 0
            for p in _tree(proc.pid):
                s = _status(p)
                anon += s.get("RssAnon", 0)
                rss += s.get("VmRSS", 0)
                hwm[p] = max(hwm.get(p, 0), s.get("VmHWM", 0))
            if anon / 1024 > m.anon_mb:
                m.anon_mb, m.anon_at = anon / 1024, time.perf_counter() - start
            m.rss_mb = max(m.rss_mb, rss / 1024)
            time.sleep(POLL_S)
        m.hwm_mb = sum(hwm.values()) / 1024
        m.maxrss_mb = usage.ru_maxrss / 1024
        m.cpu_s = usage.ru_utime + usage.ru_stime
        m.exit_code = proc.returncode
        out.seek(0)
        m.stdout = out.read().decode(errors="replace")
    for line in err_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
            event = json.loads(line)
            m.log.append(event)
            stamp = dt.datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()
            m.events.setdefault(str(event["event"]), stamp - wall0)
    return m


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args, "--log-format", "json"]


def event(m: Measure, name: str) -> dict[str, object]:
    for e in m.log:
        if e.get("event") == name:
            return e
    raise SystemExit(f"{m.label}: no {name!r} in its log (exit {m.exit_code}):\n{m.stdout}\n{m.log[-3:]}")


class Sandbox:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "sandbox", "--port", "0"],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().split()[-1]

    def requests(self) -> int:
        root = self.url.split("/apis/")[0]
        with urllib.request.urlopen(root + "/_sandbox/stats", timeout=60) as resp:
            return int(json.load(resp)["requests"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


# ---- the bench ------------------------------------------------------------------------------


@dataclass
class Sizes:
    validate: tuple[int, int]  # small, large (flatness compares them)
    rerun: int
    plan: tuple[int, ...]


FULL = Sizes(validate=(M, 5 * M), rerun=M, plan=(M, 3 * M, 10 * M))
QUICK = Sizes(validate=(20_000, 100_000), rerun=20_000, plan=(20_000, 60_000, 300_000))


def fmt_rows(n: int) -> str:
    return f"{n // M}M" if n % M == 0 else f"{n // 1000}k"


class Bench:
    def __init__(self, folder: Path, sizes: Sizes, finished_by: str) -> None:
        self.folder = folder
        self.sizes = sizes
        self.finished_by = finished_by
        self.inputs: dict[int, Path] = {}
        self.baseline: dict[int, Measure] = {}
        self.rows: list[tuple[str, Measure, Measure]] = []  # (group, measure, its baseline)
        self.notes: list[str] = []

    def input(self, n: int) -> Path:
        if n not in self.inputs:
            start = time.perf_counter()
            self.inputs[n] = write_input(self.folder / f"input-{fmt_rows(n)}.csv", n)
            size = self.inputs[n].stat().st_size / 2**20
            print(f"  generated {fmt_rows(n)} rows ({size:.0f} MiB) in {time.perf_counter() - start:.1f} s", flush=True)
        return self.inputs[n]

    def base(self, n: int) -> Measure:
        if n not in self.baseline:
            m = measure(f"polars {fmt_rows(n)}", n, [sys.executable, "-c", BASELINE, str(self.input(n))], self.folder)
            if m.exit_code != 0 or int(m.stdout.split()[-1]) != n:
                raise SystemExit(f"baseline failed: {m.stdout}")
            self.baseline[n] = m
            show(m, None)
        return self.baseline[n]

    def add(self, group: str, m: Measure) -> None:
        b = self.base(m.rows)
        self.rows.append((group, m, b))
        show(m, b)

    def fresh(self, name: str) -> Path:
        path = self.folder / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
        return path / "results.csv"

    def validate(self) -> None:
        for n in self.sizes.validate:
            self.base(n)
        for n in self.sizes.validate:
            results = self.fresh(f"validate-{fmt_rows(n)}")
            m = measure(
                f"validate {fmt_rows(n)}",
                n,
                cli("validate", str(self.input(n)), "--results", str(results)),
                self.folder,
            )
            ready = event(m, "plan.ready")
            if ready["rows"] != n or ready["to_send"] != n:
                raise SystemExit(f"validate {n}: unexpected plan {ready}")
            self.add("validate", m)
        # A nightly validate over the same --results path: its old results file (no ledger) is
        # read at start to refuse one that records sends (not a target; it must not add a peak).
        n = self.sizes.validate[-1]
        results = self.folder / f"validate-{fmt_rows(n)}" / "results.csv"
        m = measure(
            f"validate {fmt_rows(n)} again",
            n,
            cli("validate", str(self.input(n)), "--results", str(results)),
            self.folder,
        )
        if m.exit_code != 0:
            raise SystemExit(f"validate {n} again: exit {m.exit_code}")
        self.add("validate again, its results beside", m)

    def rerun(self) -> None:
        n = self.sizes.rerun
        csv = self.input(n)
        results = self.fresh(f"rerun-{fmt_rows(n)}")
        box = Sandbox()
        try:
            common = ("--results", str(results), "--base-url", box.url, "--no-fsync")
            if self.finished_by == "run":
                first = measure(
                    f"first run {fmt_rows(n)}",
                    n,
                    cli("run", str(csv), *common, "--rate", "100000", "--concurrency", "64"),
                    self.folder,
                )
                sent = box.requests()
                if first.exit_code != 0 or sent != n:
                    raise SystemExit(f"first run: exit {first.exit_code}, {sent} requests for {n} rows")
                note = f"finished job made by a real run against the sandbox: {first.seconds:.0f} s, {sent} requests"
            else:
                seconds = write_finished_ledger(csv, results)
                note = f"finished job made by ledger.store.write_state from the input's row keys in {seconds:.1f} s"
            self.notes.append(f"rerun {fmt_rows(n)}: {note}")
            print(f"  {note}", flush=True)
            before = box.requests()
            m = measure(f"rerun {fmt_rows(n)}", n, cli("run", str(csv), *common), self.folder)
            sent = box.requests() - before
        finally:
            box.close()
        ready = event(m, "plan.ready")
        if sent != 0 or m.exit_code != 0 or ready["to_send"] != 0 or ready["settled_earlier"] != n:
            raise SystemExit(f"rerun: {sent} requests sent, exit {m.exit_code}, plan {ready}")
        self.add("rerun", m)

    def plan(self) -> None:
        for n in self.sizes.plan:
            self.base(n)
        for n in self.sizes.plan:
            csv = self.input(n)
            results = self.fresh(f"plan-{fmt_rows(n)}")
            seconds = write_finished_ledger(csv, results)
            snap = LedgerPaths(results).snapshot
            size = snap.stat().st_size / 2**20 if snap.exists() else 0.0
            print(f"  ledger of {fmt_rows(n)} created records written in {seconds:.1f} s ({size:.0f} MiB)", flush=True)
            m = measure(f"plan {fmt_rows(n)}", n, cli("validate", str(csv), "--results", str(results)), self.folder)
            ready = event(m, "plan.ready")
            if ready["to_send"] != 0 or ready["settled_earlier"] != n:
                raise SystemExit(f"plan {n}: unexpected plan {ready}")
            self.add(f"plan (ledger {fmt_rows(n)})", m)
            if n != self.sizes.plan[-1]:
                shutil.rmtree(results.parent)

    def stages(self) -> list[tuple[str, dict[str, object]]]:
        out = []
        runs = [("validate", self.sizes.validate[-1], f"validate-{fmt_rows(self.sizes.validate[-1])}")]
        runs.append(("plan", self.sizes.plan[-1], f"plan-{fmt_rows(self.sizes.plan[-1])}"))
        for kind, n, folder in runs:
            results = self.folder / folder / "results.csv"
            if kind == "validate":
                results = self.fresh(folder)
            probe = self.folder / f"stages-{folder}.json"
            argv = [sys.executable, str(ROOT / "bench" / "_stage_probe.py"), str(probe)]
            m = measure(
                f"stages {folder}", n, [*argv, "validate", str(self.input(n)), "--results", str(results)], self.folder
            )
            report = json.loads(probe.read_text())
            report["wall"] = m.seconds
            report["anon_mb"] = m.anon_mb
            out.append((f"{kind} {fmt_rows(n)}", report))
            print(render_stages(f"{kind} {fmt_rows(n)}", report), flush=True)
        return out


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def show(m: Measure, b: Measure | None) -> None:
    tail = ""
    if b is not None:
        tail = f"  ({ratio(m.seconds, b.seconds)} time, {ratio(m.anon_mb, b.anon_mb)} RssAnon of polars alone)"
    if "plan.ready" in m.events:  # where the peak fell: planning (passes 1-3) or sending and rendering after it
        phase = "planning" if m.anon_at <= m.events["plan.ready"] else "after plan.ready"
        tail += f"  peak at {m.anon_at:.1f} s ({phase}, plan.ready at {m.events['plan.ready']:.1f} s)"
    print(
        f"{m.label:<18} {m.seconds:7.2f} s (cpu {m.cpu_s:6.2f} s) {m.rows_per_s / 1e6:6.2f}M rows/s  "
        f"RssAnon {m.anon_mb:6.0f} MB  VmRSS {m.rss_mb:6.0f} MB  VmHWM {m.hwm_mb:6.0f} MB  exit {m.exit_code}  "
        f"load {m.load:.1f}{tail}",
        flush=True,
    )


STAGE_ROWS = (
    ("import", "python + polars import, CLI setup"),
    ("ledger.open", "open the ledger (locate, replay journal)"),
    ("pass1", "pass 1: load + validate + key + spill, total"),
    ("pass1.read_csv", "  CSV reader, on the read-ahead thread (overlapped)"),
    ("pass1.spill", "  spill batch (Parquet, lz4), on the writer thread (overlapped)"),
    ("pass1.write_key_run", "  sort + write key run (Parquet), on the writer thread (overlapped)"),
    ("pass2.lookup.plan", "pass 2: partition lookup (dups + ledger), total"),
    ("lookup.ledger_partition", "  ledger partitions read (fold)"),
    ("lookup.snapshot_read_verify", "    snapshot read + checksum verify"),
    ("lookup.write_verdicts", "  write verdict runs"),
    ("pass2.other", "  scan key runs, sort, dups, join (rest)"),
    ("pass3", "pass 3: count verdicts, total"),
    ("pass3.merge", "  merge verdicts back in input order"),
    ("send", "send (rows_to_send: merge, decide, bodies)"),
    ("render", "render results file, total"),
    ("pass2.lookup.final", "  lookup again (final)"),
    ("render.merge", "  merge verdicts back in input order"),
    ("render.decide", "  join verdicts to the spill, decide"),
    ("render.other", "  read spills, columns, counts, CSV sink (rest)"),
    ("report.summarize", "report.summarize (reads the results file back)"),
)


def stage_table(report: dict[str, object]) -> list[tuple[str, float, float]]:
    """(label, seconds, peak RssAnon MB); nested stages (indented) are part of the row above."""
    times: dict[str, float] = dict(report["times"])  # type: ignore[arg-type]
    peaks: dict[str, float] = {k: v / 1024 for k, v in dict(report["peak_anon_kb"]).items()}  # type: ignore[arg-type]
    lookup = times.get("pass2.lookup.plan", 0.0)
    times["pass1"] = times.get("plan", 0.0) - lookup - times.get("pass3", 0.0)
    parts1 = ("pass1.read_csv", "pass1.spill", "pass1.write_key_run")  # on threads: not subtracted
    if lookup:
        parts2 = ("lookup.ledger_partition", "lookup.write_verdicts")
        times["pass2.other"] = lookup - sum(times.get(k, 0.0) for k in parts2)
    if "render" in times:
        parts = ("pass2.lookup.final", "render.merge", "render.decide")
        times["render.other"] = times["render"] - sum(times.get(k, 0.0) for k in parts)
    peaks["pass1"] = max((peaks.get(k, 0.0) for k in parts1), default=0.0)
    rows = []
    for key, text in STAGE_ROWS:
        if key in times and (times[key] > 0.005 or key in peaks):
            rows.append((text, times[key], peaks.get(key, 0.0)))
    rows.append(("whole process (wall)", float(report["wall"]), float(report["anon_mb"])))  # type: ignore[arg-type]
    return rows


def render_stages(title: str, report: dict[str, object]) -> str:
    lines = [f"stages of {title}:"]
    for text, seconds, peak in stage_table(report):
        shown = f"{peak:5.0f} MB" if peak else "    -"
        lines.append(f"  {text:<50} {seconds:7.2f} s   peak RssAnon {shown}")
    return "\n".join(lines)


def verdicts(bench: Bench) -> list[tuple[str, bool, str]]:
    by = {m.label: m for _, m, _ in bench.rows}
    small, large = bench.sizes.validate
    v_small, v_large = by[f"validate {fmt_rows(small)}"], by[f"validate {fmt_rows(large)}"]
    rerun = by[f"rerun {fmt_rows(bench.sizes.rerun)}"]
    plans = [by[f"plan {fmt_rows(n)}"] for n in bench.sizes.plan]
    flat = v_large.anon_mb / v_small.anon_mb - 1
    per_row = [m.seconds / m.rows * 1e6 for m in plans]
    big = plans[-1]
    return [
        (
            f"validate {fmt_rows(large)} >= 1M rows/s",
            v_large.rows_per_s >= VALIDATE_ROWS_PER_S,
            f"{v_large.rows_per_s / 1e6:.2f}M rows/s",
        ),
        (
            f"validate {fmt_rows(large)} peak <= 400 MB",
            v_large.anon_mb <= VALIDATE_PEAK_MB,
            f"{v_large.anon_mb:.0f} MB",
        ),
        (
            f"validate peak {fmt_rows(large)} within 15% of {fmt_rows(small)}",
            flat <= VALIDATE_FLAT,
            f"{v_large.anon_mb:.0f} vs {v_small.anon_mb:.0f} MB ({flat:+.0%})",
        ),
        (f"rerun {fmt_rows(bench.sizes.rerun)} <= 3 s", rerun.seconds <= RERUN_S, f"{rerun.seconds:.2f} s"),
        (f"rerun {fmt_rows(bench.sizes.rerun)} <= 400 MB", rerun.anon_mb <= RERUN_PEAK_MB, f"{rerun.anon_mb:.0f} MB"),
        (
            f"plan {fmt_rows(big.rows)} vs ledger {fmt_rows(big.rows)} <= 500 MB",
            big.anon_mb <= PLAN_PEAK_MB,
            f"{big.anon_mb:.0f} MB",
        ),
        (
            "plan time linear (us/row within 25% across sizes)",
            max(per_row) <= 1.25 * min(per_row),
            ", ".join(f"{fmt_rows(m.rows)} {p:.1f} us/row" for m, p in zip(plans, per_row, strict=True)),
        ),
    ]


def machine() -> dict[str, str]:
    import polars_hash as plh

    return harness_machine({"polars": pl.__version__, "polars-hash": getattr(plh, "__version__", "?")})


def write_results(bench: Bench, stages: list[tuple[str, dict[str, object]]], command: str, dest: Path) -> None:
    info = machine()
    lines = [
        "# Ledger scale benchmark (issue 6)",
        "",
        f"`{command}` on {info['date']}, commit {info['commit']}.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("date", "commit")) + ".",
        "",
        "Peak memory: RssAnon (anonymous resident memory, the part the process itself allocates) summed over the",
        "process tree, polled from /proc/PID/status every 20 ms; VmHWM includes mapped file pages.",
        "Ratios are against polars alone reading the same CSV in the same run",
        "(`pl.scan_csv(path, infer_schema=False).collect_batches(chunk_size=50_000)`, counting rows).",
        "",
        "| step | rows | wall s | cpu s | rows/s | peak RssAnon MB | VmHWM MB | time vs polars | RssAnon vs polars "
        "| load avg at start |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, b in sorted(bench.baseline.items()):
        lines.append(
            f"| polars alone | {fmt_rows(n)} | {b.seconds:.2f} | {b.cpu_s:.2f} | {b.rows_per_s / 1e6:.2f}M | "
            f"{b.anon_mb:.0f} | {b.hwm_mb:.0f} | 1 | 1 | {b.load:.1f} |"
        )
    for group, m, b in bench.rows:
        lines.append(
            f"| {group} | {fmt_rows(m.rows)} | {m.seconds:.2f} | {m.cpu_s:.2f} | {m.rows_per_s / 1e6:.2f}M | "
            f"{m.anon_mb:.0f} | {m.hwm_mb:.0f} | {ratio(m.seconds, b.seconds)} | {ratio(m.anon_mb, b.anon_mb)} "
            f"| {m.load:.1f} |"
        )
    lines += [
        "",
        "Notes: " + "; ".join(bench.notes) + ".",
        "",
        "## Targets",
        "",
        "| target | result | figure |",
        "|---|---|---|",
    ]
    for name, ok, figure in verdicts(bench):
        lines.append(f"| {name} | {'pass' if ok else '**FAIL**'} | {figure} |")
    if stages:
        lines += ["", "## Where time and memory go", ""]
        lines.append("From `--stages` (bench/_stage_probe.py: timers wrapped around each stage from outside, one more")
        lines.append(
            "run; indented rows are part of the row above; peak RssAnon is the highest seen while the stage ran,"
        )
        lines.append("polled in-process every 20 ms). `rest` rows are the stage's time outside the timed calls.")
        lines.append(
            "Hot spots and what to change: bench/PROFILE.md (written by hand from these tables and a profile)."
        )
        for title, report in stages:
            lines += ["", f"### {title}", "", "| stage | seconds | peak RssAnon MB |", "|---|---:|---:|"]
            for text, seconds, peak in stage_table(report):
                lines.append(
                    f"| {text.replace('  ', '&nbsp;&nbsp;')} | {seconds:.2f} | {f'{peak:.0f}' if peak else '-'} |"
                )
    write_results_md(dest, "\n".join(lines) + "\n")  # keeps bench_rate.py's Rate section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a CI smoke run")
    parser.add_argument("--stages", action="store_true", help="also break the largest validate and plan into stages")
    parser.add_argument(
        "--finished-by",
        choices=("write", "run"),
        help="how the finished job is made: a real run against the sandbox (full default) or write_state (--quick)",
    )
    parser.add_argument("--tmp", type=Path, help="folder for generated data (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--results-md", type=Path, help="write RESULTS.md here (default bench/RESULTS.md, full runs)")
    parser.add_argument("--only", choices=("validate", "rerun", "plan"), action="append", help="run these parts")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    base = args.tmp or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(base).free / 2**30
    need = 0.1 if args.quick else 5.0
    if free < need:
        raise SystemExit(f"{base}: {free:.1f} GiB free, the bench needs about {need} GiB")
    folder = Path(tempfile.mkdtemp(prefix="si-ledger-scale-", dir=base))
    command = " ".join([".venv/bin/python", "bench/ledger_scale.py", *sys.argv[1:]])
    print(f"{command}\ndata in {folder} ({free:.0f} GiB free)", flush=True)
    bench = Bench(folder, sizes, args.finished_by or ("write" if args.quick else "run"))
    parts = args.only or ["validate", "rerun", "plan"]
    try:
        for part in parts:
            getattr(bench, part)()
        stages = bench.stages() if args.stages and parts == ["validate", "rerun", "plan"] else []
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if parts != ["validate", "rerun", "plan"]:
        return
    print("\ntargets of issue 6" + (" (indicative only at --quick sizes)" if args.quick else "") + ":")
    failed = 0
    for name, ok, figure in verdicts(bench):
        failed += not ok
        print(f"{'pass' if ok else 'FAIL'}  {name}: {figure}")
    dest = args.results_md or (None if args.quick else ROOT / "bench" / "RESULTS.md")
    if dest is not None:
        write_results(bench, stages, command, dest)
        print(f"wrote {dest}")
    if failed and not args.quick:  # --quick sizes are too small for the targets: a smoke run only
        sys.exit(1)


if __name__ == "__main__":
    main()
