"""Plots drawn on the server as inline SVG: no script, nothing fetched, readable on a
phone (the SVG scales to the width of its box) and in dark mode (colours come from the
stylesheet's classes, which follow prefers-color-scheme).

Only numbers and escaped labels go into the markup.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # a class in explorer.css: s1, s2, s3
    values: Sequence[float | None]  # None: no snapshot that hour (a gap)


def _nice_top(v: float) -> float:
    if v <= 0:
        return 1.0
    step = 10 ** len(str(int(v))) / 10
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * step:
            return m * step
    return v


def _label(v: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:g}{unit}"
    return f"{v:g}"


def _frame(title: str, top: float, times: Sequence[dt.datetime]) -> list[Markup]:
    h = HEIGHT - TOP - BOTTOM
    parts = [
        Markup(
            '<svg class="plot" viewBox="0 0 {} {}" role="img" aria-label="{}" '
            'preserveAspectRatio="xMidYMid meet"><title>{}</title>'
        ).format(WIDTH, HEIGHT, title, title)
    ]
    for i in range(5):
        y = TOP + h - h * i / 4
        parts.append(
            Markup('<line class="grid" x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}"/>').format(
                LEFT, WIDTH - RIGHT, y, y
            )
        )
        parts.append(
            Markup('<text class="axis" x="{}" y="{:.1f}" text-anchor="end">{}</text>').format(
                LEFT - 6, y + 4, _label(top * i / 4)
            )
        )
    if times:
        for t, anchor, x in ((times[0], "start", LEFT), (times[-1], "end", WIDTH - RIGHT)):
            parts.append(
                Markup('<text class="axis" x="{}" y="{}" text-anchor="{}">{}</text>').format(
                    x, HEIGHT - 8, anchor, t.strftime("%m-%d %H:%M")
                )
            )
    return parts


def _x(i: int, n: int) -> float:
    return LEFT + (WIDTH - LEFT - RIGHT) * (i / max(n - 1, 1))


def _y(v: float, top: float) -> float:
    h = HEIGHT - TOP - BOTTOM
    return TOP + h - h * (v / top)


def lines(title: str, times: Sequence[dt.datetime], series: Sequence[Series]) -> Markup:
    """One line per series; a missing hour breaks the line rather than bridging it."""
    top = _nice_top(max((v for s in series for v in s.values if v is not None), default=0))
    parts = _frame(title, top, times)
    n = len(times)
    for s in series:
        run: list[tuple[float, float]] = []
        for i, v in enumerate([*s.values, None]):
            if v is None:
                if len(run) == 1:
                    parts.append(
                        Markup('<circle class="{}" cx="{:.1f}" cy="{:.1f}" r="2.5"/>').format(
                            s.css, *run[0]
                        )
                    )
                elif run:
                    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                    parts.append(
                        Markup('<polyline class="line {}" points="{}"/>').format(s.css, points)
                    )
                run = []
            else:
                run.append((_x(i, n), _y(v, top)))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def stacked_bars(title: str, times: Sequence[dt.datetime], series: Sequence[Series]) -> Markup:
    """Bars per hour, the series stacked (proof verdicts: passed, failed, missed)."""
    n = len(times)
    totals = [sum(s.values[i] or 0 for s in series) for i in range(n)]
    top = _nice_top(max(totals, default=0))
    parts = _frame(title, top, times)
    slot = (WIDTH - LEFT - RIGHT) / max(n, 1)
    bar = max(slot * 0.8, 1.0)
    for i in range(n):
        base = 0.0
        for s in series:
            v = s.values[i] or 0
            if v <= 0:
                continue
            y0, y1 = _y(base, top), _y(base + v, top)
            x = LEFT + slot * i + (slot - bar) / 2
            parts.append(
                Markup('<rect class="{}" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}"/>')
                .format(s.css, x, y1, bar, max(y0 - y1, 0.5))
            )
            base += v
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)
