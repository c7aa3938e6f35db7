"""The HTML run report: escaping, self-containment, downsampling, and a real render in headless Chromium."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.errors import ConfigError, InputError
from pipeline.models import RESULT_COLUMNS
from pipeline.report import load_run_document, run_document_path
from pipeline.report_chart import downsample, elapsed, nice_ticks, time_ticks, timeline_svg
from pipeline.report_html import error_examples, render_html
from pipeline.results import RESULT_SCHEMA

from .conftest import make_rows, run_cli

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(tempfile.gettempdir()) / "si-ingest-html-report"  # outside the repo; printed by the test
SCRIPT = "<script>alert('x')</script>"
URL_ATTRIBUTE = re.compile(r"""\b(?:src|href|xlink:href|action|srcset)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def synthetic_run(seconds: int = 600, *, rate: float = 100.0, mode: str = "auto", **changes: Any) -> dict[str, Any]:
    """A run document (schema 1) for `seconds` of sending: an adaptive limit that saws under 429s."""
    rng = random.Random(seconds)
    timeline, limit = [], 10.0
    for t in range(seconds):
        throttled = rng.randint(1, 6) if limit > rate and rng.random() < 0.5 else 0
        errors = 1 if rng.random() < 0.01 else 0
        requests = int(limit * rng.uniform(0.93, 1.0))
        timeline.append(
            {
                "t": t,
                "requests": requests,
                "created": requests - throttled - errors,
                "throttled": throttled,
                "errors": errors,
                "rate_limit": round(limit, 1),
            }
        )
        limit = limit * 0.7 if throttled else limit * 1.15 if t % 3 == 0 else limit
    requests = sum(e["requests"] for e in timeline)
    doc: dict[str, Any] = {
        "schema_version": 1,
        "command": "run",
        "started_at": "2026-11-28T02:15:03+00:00",
        "finished_at": "2026-11-28T02:25:05+00:00",
        "duration_s": seconds + 2.4,
        "results": "/var/lib/si/si-results.csv",
        "inputs": ["/exports/tonight/a.csv", "/exports/tonight/b.parquet"],
        "exit_code": 1,
        "rows": 61_234,
        "by_status": {
            "created": 55_000,
            "invalid": 2_000,
            "duplicate": 300,
            "rejected": 1_700,
            "failed": 500,
            "unknown": 20,
            "pending": 1_714,
        },
        "by_error": [
            {"status": "rejected", "error_code": "NOT_FOUND", "rows": 1_700},
            {"status": "invalid", "error_code": "INVALID_UUID", "rows": 1_500},
            {"status": "failed", "error_code": "API_ERROR", "rows": 500},
            {"status": "invalid", "error_code": "INVALID_DATETIME", "rows": 500},
            {"status": "duplicate", "error_code": "DUPLICATE_KEY", "rows": 300},
            {"status": "unknown", "error_code": "READ_TIMEOUT", "rows": 20},
        ],
        "plan": {"rows": 61_234, "invalid": 2_000, "duplicate": 300, "settled_earlier": 0, "to_send": 58_934},
        "requests": requests,
        "retries": 812,
        "throttled": sum(e["throttled"] for e in timeline),
        "mean_rate": requests / max(1, seconds),
        "peak_rate": max((e["requests"] for e in timeline), default=0),
        "rate": {"mode": mode, "limit": rate},
        "latency_ms": {"p50": 41.5, "p90": 88.0, "p99": 240.2, "max": 1312.0},
        "timeline": timeline,
        "aborted": None,
        "interrupted": False,
        "orgs": {},
    }
    doc.update(changes)
    return doc


def write_results(path: Path, rows: list[dict[str, Any]]) -> Path:
    full = [dict.fromkeys(RESULT_COLUMNS) | {"row_key": f"k{i}", "source_row": i + 1} | r for i, r in enumerate(rows)]
    pl.DataFrame(full, schema=RESULT_SCHEMA).write_csv(path)
    return path


def sample_results(path: Path) -> Path:
    bad = [
        ("rejected", "NOT_FOUND", "Contact not found"),
        ("invalid", "INVALID_UUID", f"contact_id is not a UUID: {SCRIPT}"),
        ("failed", "API_ERROR", 'Unexpected: see <img src="https://evil.example/x.png"> & "quotes"'),
    ]
    rows: list[dict[str, Any]] = [{"status": "created", "sir_id": i} for i in range(4)]
    for i in range(5):
        for status, code, message in bad:
            rows.append(
                {
                    "source": "a<b>.csv",
                    "contact_id": f"c-{status}-{i}",
                    "status": status,
                    "error_code": code,
                    "error_message": message,
                }
            )
    return write_results(path, rows)


# ---- unit: the page ----------------------------------------------------------------------


def test_every_string_is_escaped_and_nothing_is_loaded(tmp_path: Path):
    results = sample_results(tmp_path / "res.csv")
    run = synthetic_run(30, aborted={"code": "NOT_FOUND<x>", "message": SCRIPT, "org_id": '"><b>'})
    run["inputs"] = [f"/in/{SCRIPT}.csv"]
    run["orgs"] = {"<org>": {"requests": 3, "by_status": {"created": 3}, "aborted": {"code": "X", "message": SCRIPT}}}
    dest = tmp_path / "report.html"
    render_html(run, results, dest)
    page = dest.read_text()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=&quot;https://evil.example/x.png&quot;&gt; &amp; &quot;quotes&quot;" in page
    assert "a&lt;b&gt;.csv:" in page and "&lt;org&gt;" in page and "&quot;&gt;&lt;b&gt;" in page
    assert not URL_ATTRIBUTE.search(page)
    for loader in ("<link", "<img", "<iframe", "<object", "<embed", "@import", "url(", "@font-face"):
        assert loader not in page.lower(), loader
    assert "default-src 'none'" in page  # and the CSP forbids loading anything anyway
    assert "Aborted (org &quot;&gt;&lt;b&gt;)" in page


def test_summary_chart_latency_and_examples(tmp_path: Path):
    results = sample_results(tmp_path / "res.csv")
    dest = tmp_path / "report.html"
    render_html(synthetic_run(600), results, dest)
    page = dest.read_text()
    for text in (
        "61,234",
        "55,000",
        "1,700",
        "812",
        "auto, limit 100/s",
        "10m 02s",
        "2026-11-28 02:15:03 UTC",
        "/exports/tonight/b.parquet",
        "58,934",
        "1,312 ms",
        "exit 1",
        "Finished with problems",
    ):
        assert text in page, text
    assert page.count("<svg") == 1 and page.count('class="series"') == 3 and 'class="limit"' in page
    # the first three examples of each code, in file order
    assert page.count("c-rejected-") == 3 and "c-rejected-3" not in page
    assert "a&lt;b&gt;.csv:6" in page  # the first rejected row: source_row 5 + 1


def test_without_a_run_document_counts_come_from_the_results_file(tmp_path: Path):
    results = sample_results(tmp_path / "res.csv")
    dest = tmp_path / "report.html"
    render_html(None, results, dest)
    page = dest.read_text()
    assert "No timeline was recorded" in page and "<svg" not in page
    assert "Results report" in page and "Finished with problems: 15 of 19 rows not created." in page
    assert page.count("c-invalid-") == 3


def test_validate_and_clean_runs_say_so(tmp_path: Path):
    results = write_results(tmp_path / "res.csv", [{"status": "created", "sir_id": 1}])
    dest = tmp_path / "r.html"
    render_html(synthetic_run(0, command="validate", by_error=[], latency_ms={"p50": None}), results, dest)
    page = dest.read_text()
    assert "Validated only: 58,934 rows would be sent." in page
    assert "No requests were sent" in page and "No answers were timed" in page and "No row ended" in page
    render_html(synthetic_run(5, by_status={"created": 7}, rows=7, exit_code=0, by_error=[]), results, dest)
    assert "All 7 rows created." in dest.read_text()
    render_html(synthetic_run(5, latency_ms={"p50": 0.584, "p90": 4.41, "p99": 12.7, "max": None}), results, dest)
    assert all(t in dest.read_text() for t in ("0.58 ms", "4.4 ms", "13 ms"))
    render_html(synthetic_run(5, interrupted=True), results, dest)
    assert "Interrupted" in dest.read_text()


def test_a_sparse_run_document_renders_what_it_has(tmp_path: Path):
    results = write_results(tmp_path / "res.csv", [{"status": "failed", "error_code": "X", "error_message": "m" * 999}])
    run = {
        "schema_version": 1,
        "command": "run",
        "started_at": "2026-11-28T03:15:03+01:00",
        "finished_at": "yesterday",
        "inputs": [f"/in/{i}.csv" for i in range(20)],
        "by_error": [{"status": "failed", "error_code": "X", "rows": 1}],
    }
    dest = tmp_path / "r.html"
    render_html(run, results, dest)
    page = dest.read_text()
    assert "2026-11-28 03:15:03 +0100" in page and "yesterday" in page and "and 8 more" in page
    assert "m" * 300 + "…" in page and "m" * 301 not in page
    assert "No rows." in page and "No requests were sent" in page and "<td>\N{EN DASH}</td>" in page


def test_missing_results_file_still_renders_the_run(tmp_path: Path):
    dest = tmp_path / "r.html"
    render_html(synthetic_run(10), tmp_path / "gone.csv", dest)
    assert "Example rows unavailable" in dest.read_text()
    with pytest.raises(InputError):
        render_html(None, tmp_path / "gone.csv", dest)
    with pytest.raises(ConfigError, match="cannot write HTML report"):
        render_html(synthetic_run(10), tmp_path / "gone.csv", tmp_path / "no" / "r.html")


def test_run_document_beside_the_results(tmp_path: Path):
    results = tmp_path / "res.csv"
    assert run_document_path(results) == tmp_path / "res.csv.run.json"
    assert load_run_document(results) is None
    run_document_path(results).write_text(json.dumps(synthetic_run(3)))
    assert load_run_document(results) == synthetic_run(3)
    run_document_path(results).write_text("{not json")
    with pytest.raises(InputError, match="cannot be read"):
        load_run_document(results)
    run_document_path(results).write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(InputError, match="schema_version 99"):
        load_run_document(results)


def test_examples_are_the_first_rows_of_each_code_streamed(tmp_path: Path):
    n = 200_000
    frame = pl.DataFrame({"i": range(n)}).select(
        row_key=pl.col("i").cast(pl.String),
        source=pl.lit("big.csv"),
        source_row=pl.col("i") + 1,
        status=pl.when(pl.col("i") % 2 == 0).then(pl.lit("created")).otherwise(pl.lit("rejected")),
        error_code=pl.when(pl.col("i") % 2 == 0)
        .then(None)
        .when(pl.col("i") == n - 1)
        .then(pl.lit("RARE"))
        .otherwise(pl.lit("NOT_FOUND")),
    )
    path = tmp_path / "big.csv"
    frame.with_columns(
        [pl.lit(None, dtype=RESULT_SCHEMA[c]).alias(c) for c in RESULT_COLUMNS if c not in frame.columns]
    ).select(RESULT_COLUMNS).write_csv(path)
    found = error_examples(
        path, {("rejected", "NOT_FOUND"): n // 2 - 1, ("rejected", "RARE"): 1, ("failed", "NONE"): 2}
    )
    assert [e[1] for e in found[("rejected", "NOT_FOUND")]] == [2, 4, 6]
    assert [e[1] for e in found[("rejected", "RARE")]] == [n]
    assert found[("failed", "NONE")] == []
    assert error_examples(path, {}) == {}


# ---- unit: the chart ---------------------------------------------------------------------


def test_downsampling_bounds_and_totals():
    six_hours = synthetic_run(6 * 3600)["timeline"]
    points = downsample(six_hours)
    assert len(points) <= 600 and {p.width for p in points[:-1]} == {36}
    assert points[-1].start + points[-1].width == 6 * 3600
    total = sum(e["requests"] for e in six_hours)
    assert sum(p.requests * p.width for p in points) == pytest.approx(total)
    assert sum(p.throttled * p.width for p in points) == pytest.approx(sum(e["throttled"] for e in six_hours))
    assert all(p.requests_min <= p.requests <= p.requests_max for p in points)
    ten = downsample(synthetic_run(10)["timeline"])
    assert len(ten) == 10 and all(p.width == 1 for p in ten)
    assert len(downsample(six_hours, max_points=7)) <= 7


def test_downsampling_fills_idle_seconds_and_ignores_junk():
    points = downsample(
        [{"t": 0, "requests": 4, "rate_limit": 5}, {"t": 3, "requests": 2, "errors": 1}, {"t": -1}, {"t": "x"}]
    )
    assert [p.requests for p in points] == [4, 0, 0, 2]
    assert [p.rate_limit for p in points] == [5, 5, 5, 5]  # carried over idle seconds
    assert points[3].errors == 1
    assert downsample([]) == [] and downsample([{"requests": 3}]) == []


def test_ticks_and_labels():
    assert nice_ticks(97) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0) == [0, 1]
    assert nice_ticks(0.03, count=2)[-1] >= 0.03
    assert time_ticks(10) == [0, 2, 4, 6, 8, 10]
    assert time_ticks(21600) == list(range(0, 21601, 3600))
    assert len(time_ticks(10 * 86400)) <= 9
    assert [elapsed(s) for s in (5, 60, 90, 3600, 5400)] == ["5s", "1m", "1m30s", "1h", "1h30m"]


def test_one_second_run_still_draws():
    svg = timeline_svg(downsample([{"t": 0, "requests": 3, "rate_limit": 20}]))
    assert svg.count('class="series"') == 3 and "M" in svg


# ---- the CLI -----------------------------------------------------------------------------


def test_report_html_through_the_cli(tmp_path: Path):
    results = sample_results(tmp_path / "res.csv")
    run_document_path(results).write_text(json.dumps(synthetic_run(20)))
    out = tmp_path / "report.html"
    rep = run_cli("report", str(results), "--html", str(out))
    assert rep.code == 0, rep.stderr
    assert f"html report: {out}" in rep.stdout and "<svg" in out.read_text()


# ---- rendered in headless Chromium -------------------------------------------------------


def chromium(url: str, workdir: Path, *extra: str) -> str:
    """Run headless Chromium once on `url`; its stdout (the DOM with --dump-dom)."""
    profile = Path(tempfile.mkdtemp(dir=workdir, prefix="profile-"))
    args = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        "--window-size=1280,2000",
        *extra,
        url,
    ]
    env = os.environ | {"HOME": str(profile)}
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the browser and its helpers
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-2000:]
    return out


def screenshot(html: Path, png: Path) -> tuple[int, int]:
    chromium(html.as_uri(), html.parent, f"--screenshot={png}")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def keep(png: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    shutil.copy(png, SCREENSHOTS / name)
    with capsys.disabled():
        print(f"\nHTML report screenshot: {SCREENSHOTS / name}")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    started = time.monotonic()
    results = sample_results(tmp_path / "res.csv")
    page = tmp_path / "report.html"
    render_html(synthetic_run(6 * 3600), results, page)
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")

    assert screenshot(page, tmp_path / "report.png") == (1280, 2000)
    assert screenshot(blank, tmp_path / "blank.png") == (1280, 2000)
    # a blank page compresses to almost nothing; text, badges and a 600-point chart do not
    assert (tmp_path / "report.png").stat().st_size > 10 * (tmp_path / "blank.png").stat().st_size

    dom = chromium(page.as_uri(), tmp_path, "--dump-dom")
    for text in ("61,234", "55,000", "Finished with problems", "1,312 ms", "NOT_FOUND", "c-rejected-0"):
        assert text in dom, text
    assert "<script" not in dom.lower() and "&lt;script&gt;" in dom  # the message stayed text
    chart = re.search(r"<svg.*?</svg>", dom, re.S)
    assert chart is not None
    series = re.findall(r'<path class="series" d="M([^"]+)"', chart.group(0))
    assert len(series) == 3 and all(d.count(",") >= 600 for d in series)  # 600 buckets, two corners each
    keep(tmp_path / "report.png", "report.png", capsys)
    assert time.monotonic() - started < 30


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)")
def test_report_of_a_real_run_renders(sandbox, write_input, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rows = make_rows(40, seed=9, prefix="html")
    rows["contact_id"][3] = "not-a-uuid"
    rows["sir_flag"][5] = "keepwarm"
    known = tmp_path / "contacts.txt"
    known.write_text("\n".join(c for i, c in enumerate(rows["contact_id"]) if i % 10 != 7))
    box = sandbox("--contacts", str(known))
    results = tmp_path / "res.csv"
    csv = write_input("nightly.csv", rows)
    ran = run_cli("run", str(csv), "--base-url", box.url, "--results", str(results), "--rate", "200")
    assert ran.code == 1, ran.stderr
    page = tmp_path / "real.html"
    rep = run_cli("report", str(results), "--html", str(page))
    assert rep.code == 0, rep.stderr

    assert screenshot(page, tmp_path / "real.png") == (1280, 2000)
    dom = chromium(page.as_uri(), tmp_path, "--dump-dom")
    for text in ("INVALID_UUID", "INVALID_FLAG", "NOT_FOUND", "nightly.csv:4", "not-a-uuid"):
        assert text in dom, text
    if run_document_path(results).exists():  # written by runs once the runner records its run document
        assert "<svg" in dom and 'class="series"' in dom
    else:
        assert "No timeline was recorded" in dom
    keep(tmp_path / "real.png", "real-run.png", capsys)
