"""Small self-contained SVG charts for the HTML report (no plotting library, no scripts)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 640, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 60, 150, 30, 45
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")

Series = tuple[str, Sequence[tuple[float, float]]]


def line_chart(title: str, x_label: str, y_label: str, series: Sequence[Series]) -> str:
    """Lines of (x, y) points, one colour per named series, with a legend on the right."""
    points = [p for _, values in series for p in values if _finite(*p)]
    if not points:
        return _empty(title)
    x_max = _nice(max(x for x, _ in points))
    y_max = _nice(max(y for _, y in points))
    x_min = min(0.0, min(x for x, _ in points))
    y_min = min(0.0, min(y for _, y in points))
    scale = _Scale(x_min, x_max, y_min, y_max)
    parts = [_frame(title, x_label, y_label, scale)]
    for index, (name, values) in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        coordinates = " ".join(
            f"{scale.x(x):.1f},{scale.y(y):.1f}" for x, y in values if _finite(x, y)
        )
        if coordinates:
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coordinates}"/>'
            )
        parts.append(_legend(index, name, color))
    return _svg(parts)


def bar_chart(title: str, y_label: str, bars: Sequence[tuple[str, float]], unit: str = "") -> str:
    """Vertical bars with their value written above each."""
    values = [v for _, v in bars if _finite(v, 0.0)]
    if not values:
        return _empty(title)
    scale = _Scale(0.0, float(len(bars)), 0.0, _nice(max(values) or 1.0))
    parts = [_frame(title, "", y_label, scale, x_ticks=False)]
    slot = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / max(len(bars), 1)
    for index, (label, value) in enumerate(bars):
        color = PALETTE[index % len(PALETTE)]
        left = MARGIN_LEFT + index * slot + slot * 0.15
        if _finite(value, 0.0):
            top = scale.y(value)
            parts.append(
                f'<rect x="{left:.1f}" y="{top:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{scale.y(0.0) - top:.1f}" fill="{color}"/>'
                f'<text x="{left + slot * 0.35:.1f}" y="{top - 4:.1f}" font-size="11" '
                f'text-anchor="middle">{value:.3g}{escape(unit)}</text>'
            )
        parts.append(
            f'<text x="{left + slot * 0.35:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 15}" font-size="10" '
            f'text-anchor="middle">{escape(label[:18])}</text>'
        )
    return _svg(parts)


def cdf(values: Sequence[float]) -> list[tuple[float, float]]:
    """Empirical cumulative distribution as (value, fraction) steps."""
    ordered = sorted(v for v in values if _finite(v, 0.0))
    n = len(ordered)
    return [(v, (i + 1) / n) for i, v in enumerate(ordered)]


class _Scale:
    def __init__(self, x_min: float, x_max: float, y_min: float, y_max: float) -> None:
        self.x_min, self.x_max = x_min, x_max if x_max > x_min else x_min + 1
        self.y_min, self.y_max = y_min, y_max if y_max > y_min else y_min + 1

    def x(self, value: float) -> float:
        span = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
        return MARGIN_LEFT + (value - self.x_min) / (self.x_max - self.x_min) * span

    def y(self, value: float) -> float:
        span = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
        return HEIGHT - MARGIN_BOTTOM - (value - self.y_min) / (self.y_max - self.y_min) * span


def _frame(title: str, x_label: str, y_label: str, scale: _Scale, x_ticks: bool = True) -> str:
    bottom, right = HEIGHT - MARGIN_BOTTOM, WIDTH - MARGIN_RIGHT
    parts = [
        f'<text x="{MARGIN_LEFT}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{MARGIN_LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>',
        f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" x2="{MARGIN_LEFT}" y2="{bottom}" '
        'stroke="#333"/>',
        f'<text x="{(MARGIN_LEFT + right) / 2}" y="{HEIGHT - 8}" font-size="12" '
        f'text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="14" y="{(MARGIN_TOP + bottom) / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {(MARGIN_TOP + bottom) / 2})">{escape(y_label)}</text>',
    ]
    for i in range(5):
        value = scale.y_min + (scale.y_max - scale.y_min) * i / 4
        y = scale.y(value)
        parts.append(
            f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" font-size="10" '
            f'text-anchor="end">{value:.3g}</text>'
        )
        if x_ticks:
            x_value = scale.x_min + (scale.x_max - scale.x_min) * i / 4
            x = scale.x(x_value)
            parts.append(
                f'<text x="{x:.1f}" y="{bottom + 15}" font-size="10" '
                f'text-anchor="middle">{x_value:.3g}</text>'
            )
    return "".join(parts)


def _legend(index: int, name: str, color: str) -> str:
    x, y = WIDTH - MARGIN_RIGHT + 12, MARGIN_TOP + 10 + index * 18
    return (
        f'<rect x="{x}" y="{y - 9}" width="12" height="4" fill="{color}"/>'
        f'<text x="{x + 18}" y="{y - 4}" font-size="11">{escape(name[:20])}</text>'
    )


def _svg(parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">' + "".join(parts) + "</svg>"
    )


def _empty(title: str) -> str:
    return _svg([f'<text x="20" y="30" font-size="14">{escape(title)}: no data</text>'])


def _nice(value: float) -> float:
    """A round axis maximum at or above `value`."""
    if not _finite(value, 0.0) or value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _finite(x: float, y: float) -> bool:
    return math.isfinite(x) and math.isfinite(y)
