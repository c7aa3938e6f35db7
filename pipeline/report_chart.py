"""A run's timeline -> one inline SVG chart (requests/s, rate limit, 429s and errors over time), no JS."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

MAX_POINTS = 600

WIDTH = 1120
LEFT, RIGHT = 64, 20
TOP_Y, TOP_H = 54, 210  # requests/s panel
LOW_Y, LOW_H = 320, 100  # 429s and errors panel
HEIGHT = LOW_Y + LOW_H + 44

COLORS = {"requests": "#2563eb", "limit": "#64748b", "throttled": "#d97706", "errors": "#dc2626"}


@dataclass(frozen=True, slots=True)
class Point:
    """One bucket of `width` seconds from `start`; rates are means per second over the bucket."""

    start: int
    width: int
    requests: float
    requests_min: float
    requests_max: float
    throttled: float
    errors: float
    rate_limit: float | None


def _number(entry: Mapping[str, Any], key: str) -> float:
    value = entry.get(key)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0


def downsample(timeline: Iterable[Mapping[str, Any]], max_points: int = MAX_POINTS) -> list[Point]:
    """Per-second entries (seconds with no entry count as idle) -> at most `max_points` buckets.

    Buckets are whole seconds wide, so a 10-second run keeps its 10 points and a 6-hour run
    becomes 600 points of 36 s; means keep the totals (mean * width sums to the count).
    """
    seconds: dict[int, Mapping[str, Any]] = {}
    for entry in timeline:
        t = entry.get("t")
        if isinstance(t, int) and t >= 0:
            seconds[t] = entry
    if not seconds:
        return []
    span = max(seconds) + 1
    width = max(1, math.ceil(span / max(1, max_points)))
    points = []
    limit: float | None = None
    for start in range(0, span, width):
        stop = min(span, start + width)
        requests, limits = [], []
        throttled = errors = 0.0
        for t in range(start, stop):
            second = seconds.get(t, {})
            requests.append(_number(second, "requests"))
            throttled += _number(second, "throttled")
            errors += _number(second, "errors")
            if _number(second, "rate_limit") > 0:
                limit = _number(second, "rate_limit")
            if limit is not None:
                limits.append(limit)  # carried over idle seconds
        n = stop - start
        mean_limit = sum(limits) / len(limits) if limits else None
        points.append(
            Point(start, n, sum(requests) / n, min(requests), max(requests), throttled / n, errors / n, mean_limit)
        )
    return points


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """0 and round steps (1, 2, 2.5, 5 x 10^k) up to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def time_ticks(span: int, count: int = 8) -> list[int]:
    step = next((s for s in TIME_STEPS if span / s <= count), TIME_STEPS[-1] * math.ceil(span / count / 86400))
    return list(range(0, span + 1, step))


def elapsed(seconds: float) -> str:
    """Seconds since the first request as a tick label: 45s, 12m, 1h30m."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m" + (f"{s % 60:02d}s" if s % 60 else "")
    return f"{s // 3600}h" + (f"{s % 3600 // 60:02d}m" if s % 3600 // 60 else "")


def _label(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}".rstrip("0")


class _Panel:
    """Maps (seconds, value) into one panel's pixel box."""

    def __init__(self, y: int, height: int, span: int, top: float) -> None:
        self.y, self.height, self.span, self.top = y, height, span, top

    def x(self, t: float) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * t / self.span

    def v(self, value: float) -> float:
        return self.y + self.height - self.height * min(value, self.top) / self.top

    def steps(self, points: Sequence[Point], value: str) -> str:
        """A step line: each bucket's value held flat across its seconds."""
        parts = []
        for p in points:
            y = self.v(getattr(p, value))
            parts.append(f"{self.x(p.start):.1f},{y:.1f} {self.x(p.start + p.width):.1f},{y:.1f}")
        return "M" + " L".join(parts)

    def area(self, points: Sequence[Point], upper: str, lower: str | None = None) -> str:
        top = self.steps(points, upper)
        if lower is None:
            base = self.y + self.height
            return f"{top} L{self.x(points[-1].start + points[-1].width):.1f},{base} L{self.x(0):.1f},{base} Z"
        back = []
        for p in reversed(points):
            y = self.v(getattr(p, lower))
            back.append(f"{self.x(p.start + p.width):.1f},{y:.1f} {self.x(p.start):.1f},{y:.1f}")
        return f"{top} L" + " L".join(back) + " Z"

    def grid(self, ticks: Sequence[float], unit: str) -> list[str]:
        out = []
        for tick in ticks:
            y = self.v(tick)
            out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
            out.append(f'<text class="tick" x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{_label(tick)}</text>')
        out.append(f'<text class="axis" x="{LEFT}" y="{self.y - 12}">{escape(unit)}</text>')
        return out


def _legend(items: Sequence[tuple[str, str, str]]) -> list[str]:
    out, x = [], LEFT
    for kind, color, text in items:
        if kind == "dash":
            out.append(
                f'<line x1="{x}" x2="{x + 18}" y1="14" y2="14" stroke="{color}" stroke-width="2" '
                'stroke-dasharray="5 3"/>'
            )
        elif kind == "band":
            out.append(f'<rect x="{x}" y="9" width="18" height="10" fill="{color}" opacity="0.18"/>')
        else:
            out.append(f'<rect x="{x}" y="12" width="18" height="4" rx="1" fill="{color}"/>')
        out.append(f'<text class="legend" x="{x + 24}" y="18">{escape(text)}</text>')
        x += 36 + 7 * len(text)
    return out


def timeline_svg(points: Sequence[Point]) -> str:
    """Two panels sharing the time axis: requests/s with the rate limit, then 429s and errors per second."""
    span = points[-1].start + points[-1].width
    limits = [p.rate_limit for p in points if p.rate_limit is not None]
    banded = any(p.width > 1 for p in points)
    upper = nice_ticks(max([p.requests_max if banded else p.requests for p in points] + limits + [1.0]))
    lower = nice_ticks(max([p.throttled for p in points] + [p.errors for p in points] + [1.0]), count=2)
    top, low = _Panel(TOP_Y, TOP_H, span, upper[-1]), _Panel(LOW_Y, LOW_H, span, lower[-1])

    legend = [("line", COLORS["requests"], "requests/s")]
    if banded:
        legend.append(("band", COLORS["requests"], "min-max within a point"))
    if limits:
        legend.append(("dash", COLORS["limit"], "rate limit"))
    legend += [("line", COLORS["throttled"], "429s/s"), ("line", COLORS["errors"], "errors/s")]

    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        'aria-label="requests per second, 429s and errors over time">',
        "<title>Requests per second, 429s and errors over time</title>",
        *_legend(legend),
        *top.grid(upper, "requests/s"),
        *low.grid(lower, "429s and errors/s"),
    ]
    for t in time_ticks(span):
        x = top.x(t)
        out.append(f'<line class="grid vgrid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP_Y}" y2="{LOW_Y + LOW_H}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{LOW_Y + LOW_H + 18}" text-anchor="middle">{elapsed(t)}</text>')
    out.append(
        f'<text class="axis" x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle">'
        "time since the first request</text>"
    )
    if banded:
        out.append(
            f'<path class="band" d="{top.area(points, "requests_max", "requests_min")}" fill="{COLORS["requests"]}"/>'
        )
    else:
        out.append(f'<path class="fill" d="{top.area(points, "requests")}" fill="{COLORS["requests"]}"/>')
    out.append(f'<path class="series" d="{top.steps(points, "requests")}" stroke="{COLORS["requests"]}"/>')
    if limits:
        known = [p for p in points if p.rate_limit is not None]
        out.append(f'<path class="limit" d="{top.steps(known, "rate_limit")}" stroke="{COLORS["limit"]}"/>')
    for name in ("throttled", "errors"):
        out.append(f'<path class="fill" d="{low.area(points, name)}" fill="{COLORS[name]}"/>')
        out.append(f'<path class="series" d="{low.steps(points, name)}" stroke="{COLORS[name]}"/>')
    for panel in (top, low):
        base = panel.y + panel.height
        out.append(f'<line class="axisline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}"/>')
    out.append("</svg>")
    return "\n".join(out)
