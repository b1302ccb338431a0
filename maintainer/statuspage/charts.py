"""Small inline SVG charts: no script, no external asset, readable without colour.

Pure functions from numbers to an ``<svg>`` string. Every bar and point has a
``<title>`` (the browser shows it on hover) and flagged bars carry a text
marker as well as a colour, so a sudden drop is visible at a glance and to a
test reading the DOM. Bars of a second kind (a PITR drill among logical ones)
carry their kind as a class, a colour, a text marker and a legend entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Callable

WIDTH, HEIGHT = 560, 180
LEFT, RIGHT, TOP, BOTTOM = 64, 64, 18, 26
OK, FLAG, LINE, GRID, MUTED = "#3b82f6", "#dc2626", "#f59e0b", "#e5e7eb", "#6b7280"
KIND = "#7c3aed"  # bars of the second kind


@dataclass
class Bar:
    label: str  # under the bar (a date)
    value: float
    title: str  # hover text
    flagged: bool = False
    marker: str = ""  # text above a flagged bar, or above a bar of a kind
    line: float | None = None  # the second series (drawn as a line on the right axis)
    kind: str = ""  # a second kind of bar (e.g. "pitr"): a class of its own, KIND's colour


def _fmt(value: float, fmt: Callable[[float], str]) -> str:
    return escape(fmt(value))


def bar_chart(bars: list[Bar], *, label: str, fmt: Callable[[float], str],
              line_label: str | None = None, line_fmt: Callable[[float], str] | None = None,
              kind_label: str | None = None, empty: str = "nothing to show yet") -> str:
    """Bars on the left axis, optionally a line on the right axis; an empty note when no bar.
    ``kind_label`` is the legend entry of the bars that have a ``kind``."""
    aria = escape(label)
    if not bars:
        return (f'<svg class="chart" role="img" aria-label="{aria}" viewBox="0 0 {WIDTH} 40" width="{WIDTH}" '
                f'height="40" xmlns="http://www.w3.org/2000/svg"><text x="8" y="24" fill="{MUTED}">'
                f'{escape(empty)}</text></svg>')
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = max(b.value for b in bars) or 1.0
    slot = plot_w / len(bars)
    bar_w = min(36.0, max(2.0, slot * 0.7))
    out = [f'<svg class="chart" role="img" aria-label="{aria}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
           f'height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">',
           f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="{MUTED}"/>',
           f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT + plot_w}" y2="{TOP}" stroke="{GRID}"/>',
           f'<text x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end" fill="{OK}">{_fmt(top, fmt)}</text>',
           f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" fill="{MUTED}">0</text>']
    for i, bar in enumerate(bars):
        h = plot_h * bar.value / top
        x = LEFT + i * slot + (slot - bar_w) / 2
        y = TOP + plot_h - h
        colour = FLAG if bar.flagged else KIND if bar.kind else OK
        classes = "bar" + (" flagged" if bar.flagged else "") + (f" {bar.kind}" if bar.kind else "")
        out.append(f'<rect class="{escape(classes)}" x="{x:.1f}" y="{y:.1f}" '
                   f'width="{bar_w:.1f}" height="{max(h, 1):.1f}" fill="{colour}"><title>{escape(bar.title)}'
                   f'</title></rect>')
        if (bar.flagged or bar.kind) and bar.marker:
            out.append(f'<text class="marker" x="{x + bar_w / 2:.1f}" y="{max(y - 3, TOP - 6):.1f}" '
                       f'text-anchor="middle" fill="{colour}" font-weight="bold">{escape(bar.marker)}</text>')
    step = max(1, len(bars) // 6)
    for i in range(0, len(bars), step):
        x = LEFT + i * slot + slot / 2
        out.append(f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" fill="{MUTED}">'
                   f'{escape(bars[i].label)}</text>')
    values = [b.line for b in bars if b.line is not None]
    if values and line_fmt is not None:
        line_top = max(values) or 1.0
        points = [(LEFT + i * slot + slot / 2, TOP + plot_h - plot_h * b.line / line_top)
                  for i, b in enumerate(bars) if b.line is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{LINE}" stroke-width="2"/>')
        out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{LINE}"/>' for x, y in points]
        out.append(f'<text x="{LEFT + plot_w + 4}" y="{TOP + 4}" fill="{LINE}">{_fmt(line_top, line_fmt)}</text>')
    out.append(_legend(label, line_label if values and line_fmt else None, any(b.flagged for b in bars),
                       kind_label if any(b.kind for b in bars) else None))
    out.append("</svg>")
    return "".join(out)


def _legend(label: str, line_label: str | None, flagged: bool, kind_label: str | None = None) -> str:
    x = LEFT + 4
    parts = [f'<rect x="{x}" y="2" width="10" height="10" fill="{OK}"/>'
             f'<text x="{x + 14}" y="11">{escape(label)}</text>']
    x += 24 + 6 * len(label)
    if line_label:
        parts.append(f'<line x1="{x}" y1="7" x2="{x + 12}" y2="7" stroke="{LINE}" stroke-width="2"/>'
                     f'<text x="{x + 16}" y="11">{escape(line_label)}</text>')
        x += 28 + 6 * len(line_label)
    if kind_label:
        parts.append(f'<rect x="{x}" y="2" width="10" height="10" fill="{KIND}"/>'
                     f'<text x="{x + 14}" y="11">{escape(kind_label)}</text>')
        x += 24 + 6 * len(kind_label)
    if flagged:
        parts.append(f'<rect x="{x}" y="2" width="10" height="10" fill="{FLAG}"/>'
                     f'<text x="{x + 14}" y="11">flagged</text>')
    return "".join(parts)
