"""Inline SVG plots (accuracy vs K, cost vs quality), drawn as text so pages need no script and no image file.

Coordinates are printed with fixed decimals, so the same numbers give byte-identical SVG.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from leaderboard.formatting import esc, estimate, fixed, one_line, sig
from leaderboard.statistics import Interval

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C564B")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM, _LEGEND = 560, 300, 64, 16, 30, 46, 230


MARKERS = ("circle", "square", "triangle", "diamond", "cross")
_CORNERS: dict[str, list[tuple[float, float]]] = {  # polygon markers, in units of the marker size
    "triangle": [(0, -1.2), (1.1, 0.9), (-1.1, 0.9)],
    "diamond": [(0, -1.3), (1.3, 0), (0, 1.3), (-1.3, 0)],
    "cross": [
        (-0.4, -1.2),
        (0.4, -1.2),
        (0.4, -0.4),
        (1.2, -0.4),
        (1.2, 0.4),
        (0.4, 0.4),
        (0.4, 1.2),
        (-0.4, 1.2),
        (-0.4, 0.4),
        (-1.2, 0.4),
        (-1.2, -0.4),
        (-0.4, -0.4),
    ],
}


def _marker(index: int, cx: float, cy: float, size: float, title: str = "") -> str:
    """The entry's marker shape at (cx, cy): shape and colour cycle together, so that 40 entries
    (8 colours x 5 shapes, coprime cycles) each get a distinct pair and neighbours differ in both."""
    color = PALETTE[index % len(PALETTE)]
    shape = MARKERS[index % len(MARKERS)]
    inner = f"<title>{title}</title>" if title else ""
    x, y, r = _c(cx), _c(cy), size
    if shape == "circle":
        return f'<circle cx="{x}" cy="{y}" r="{r:g}" fill="{color}">{inner}</circle>'
    if shape == "square":
        return (
            f'<rect x="{_c(cx - r)}" y="{_c(cy - r)}" width="{2 * r:g}" height="{2 * r:g}" fill="{color}">'
            f"{inner}</rect>"
        )
    points = " ".join(f"{_c(cx + dx * r)},{_c(cy + dy * r)}" for dx, dy in _CORNERS[shape])
    return f'<polygon points="{points}" fill="{color}">{inner}</polygon>'


def _style(index: int) -> tuple[str, str]:
    """Line colour and dash of an entry; the dash changes once the palette wraps, so lines stay distinct."""
    return PALETTE[index % len(PALETTE)], DASHES[(index // len(PALETTE)) % len(DASHES)]


def _c(x: float) -> str:
    return fixed(x, 2)


def _nice_ticks(lo: float, hi: float, count: int = 5) -> tuple[float, float, list[float], int]:
    """Axis range widened to round steps, the ticks, and the decimals their labels need."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi - lo <= 0:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = multiple * magnitude
        if (hi - lo) / step <= count:
            break
    low = math.floor(lo / step + 1e-9) * step
    high = math.ceil(hi / step - 1e-9) * step
    n = round((high - low) / step)
    ticks = [low + i * step for i in range(n + 1)]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9) + (1 if multiple == 2.5 else 0))
    return low, high, ticks, decimals


def _scale(v: float, lo: float, hi: float, a: float, b: float) -> float:
    return a + (v - lo) / (hi - lo) * (b - a)


def _svg_frame(title: str, x_label: str, y_label: str, width: int) -> list[str]:
    """The opening tag, title and axis labels every plot shares."""
    return [
        f'<svg class="plot" viewBox="0 0 {width} {_H}" role="img" aria-label="{esc(title)}">',
        f'<text class="title" x="{_LEFT}" y="18">{esc(title)}</text>',
        f'<text x="{_c(_LEFT + (_W - _LEFT - _RIGHT) / 2)}" y="{_H - 8}" '
        f'text-anchor="middle">{esc(x_label)}</text>',
        f'<text transform="translate(14 {_c(_TOP + (_H - _TOP - _BOTTOM) / 2)}) rotate(-90)" '
        f'text-anchor="middle">{esc(y_label)}</text>',
    ]


def _y_axis(lo: float, hi: float) -> tuple[float, float, list[str]]:
    """The y range with a margin, its grid lines and tick labels, and both axis lines."""
    pad = 0.06 * (hi - lo)
    low, high, ticks, decimals = _nice_ticks(lo - pad, hi + pad)
    parts = []
    for tick in ticks:
        y = _scale(tick, low, high, _H - _BOTTOM, _TOP)
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_c(y)}" y2="{_c(y)}"/>')
        parts.append(
            f'<text x="{_LEFT - 6}" y="{_c(y + 4)}" text-anchor="end">{fixed(tick, decimals)}</text>'
        )
    parts.append(f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_H - _BOTTOM}"/>')
    parts.append(
        f'<line class="axis" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_H - _BOTTOM}" y2="{_H - _BOTTOM}"/>'
    )
    return low, high, parts


def _legend(items: Sequence[tuple[str, int]], markers: bool = False) -> list[str]:
    """A legend right of the plot: marker (and line sample, unless ``markers``) then the label."""
    parts = []
    for i, (label, style) in enumerate(items):
        color, dash = _style(style)
        y = _TOP + 8 + 16 * i
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        if not markers:
            parts.append(
                f'<line x1="{_W + 8}" x2="{_W + 30}" y1="{y}" y2="{y}" stroke="{color}" '
                f'stroke-width="2"{dash_attr}/>'
            )
        parts.append(_marker(style, _W + 19, y, 4))
        parts.append(f'<text x="{_W + 36}" y="{y + 4}">{esc(one_line(label, 32))}</text>')
    return parts


@dataclass(frozen=True)
class Series:
    """One method's line: ``style`` is its site-wide colour index, points are ``(x index, estimate)``."""

    label: str
    style: int
    points: tuple[tuple[int, Interval], ...]


@dataclass(frozen=True)
class Point:
    """One method on a scatter plot; ``style`` is its site-wide colour index."""

    label: str
    style: int
    x: float
    y: float


def _series_parts(s: Series, x_of: Callable[[int], float], low: float, high: float) -> list[str]:
    """One series of a line chart: its polyline, interval bars and markers."""
    parts = []
    color, dash = _style(s.style)
    coords = [(x_of(i), _scale(iv.mean, low, high, _H - _BOTTOM, _TOP), iv) for i, iv in s.points]
    if len(coords) > 1:
        path = " ".join(f"{_c(x)},{_c(y)}" for x, y, _ in coords)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash_attr}/>')
    for x, y, iv in coords:
        if iv.has_interval:
            y1 = _scale(iv.low, low, high, _H - _BOTTOM, _TOP)
            y2 = _scale(iv.high, low, high, _H - _BOTTOM, _TOP)
            parts.append(f'<line x1="{_c(x)}" x2="{_c(x)}" y1="{_c(y1)}" y2="{_c(y2)}" stroke="{color}"/>')
        parts.append(_marker(s.style, x, y, 3, f"{esc(s.label)}: {esc(estimate(iv))}"))
    return parts


def svg_lines(title: str, x_values: Sequence[str], series: Sequence[Series], y_label: str) -> str:
    """Line chart over categorical x (K values) with interval bars; series keep their given order."""
    values = [v for s in series for _, iv in s.points for v in (iv.mean, iv.low, iv.high) if math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    parts = _svg_frame(title, "support size K", y_label, _W + _LEGEND)
    low, high, axis = _y_axis(lo, hi)
    parts += axis
    span = _W - _RIGHT - _LEFT

    def x_of(i: int) -> float:
        return _LEFT + span * (i + 0.5) / max(1, len(x_values))

    for i, text in enumerate(x_values):
        parts.append(
            f'<text x="{_c(x_of(i))}" y="{_H - _BOTTOM + 16}" text-anchor="middle">{esc(text)}</text>'
        )
    for s in series:
        parts += _series_parts(s, x_of, low, high)
    parts += _legend([(s.label, s.style) for s in series])
    parts.append("</svg>")
    return "\n".join(parts)


def svg_scatter(title: str, points: Sequence[Point], x_label: str, y_label: str) -> str:
    """Labelled points on a log x axis (cost spans orders of magnitude); x <= 0 sits at the axis start.

    Points drawn at the same spot share one text label, so coinciding methods stay readable.
    """
    parts = _svg_frame(title, f"{x_label} (log scale)", y_label, _W + _LEGEND)
    ys = [p.y for p in points if math.isfinite(p.y)]
    low, high, axis = _y_axis(min(ys) if ys else 0.0, max(ys) if ys else 1.0)
    parts += axis
    logs = [math.log10(p.x) for p in points if p.x > 0 and math.isfinite(p.x)]
    e_lo = math.floor(min(logs) - 0.05) if logs else 0
    e_hi = max(math.ceil(max(logs) + 0.05) if logs else 1, e_lo + 1)
    for e in range(e_lo, e_hi + 1):
        x = _scale(e, e_lo, e_hi, _LEFT, _W - _RIGHT)
        parts.append(f'<text x="{_c(x)}" y="{_H - _BOTTOM + 16}" text-anchor="middle">{10.0**e:g}</text>')
    spots: dict[tuple[int, int], tuple[str, str, list[str]]] = {}
    for p in points:
        position = math.log10(p.x) if p.x > 0 and math.isfinite(p.x) else e_lo
        cx = _c(_scale(position, e_lo, e_hi, _LEFT, _W - _RIGHT))
        cy = _c(_scale(p.y, low, high, _H - _BOTTOM, _TOP))
        title = f"{esc(p.label)}: x={esc(sig(p.x))}, y={esc(fixed(p.y))}"
        parts.append(_marker(p.style, float(cx), float(cy), 4, title))
        spot = (round(float(cx) / 8), round(float(cy) / 8))  # within ~8 px reads as the same spot
        spots.setdefault(spot, (cx, cy, []))[2].append(p.label)
    for cx, cy, labels in spots.values():
        text = one_line(", ".join(labels), 40)
        parts.append(f'<text x="{_c(float(cx) + 6)}" y="{_c(float(cy) - 6)}">{esc(text)}</text>')
    parts += _legend([(p.label, p.style) for p in points], markers=True)
    parts.append("</svg>")
    return "\n".join(parts)
