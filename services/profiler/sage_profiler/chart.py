"""An SVG chart of one run's memory and CPU over time, from `profile.done` series; no dependencies.

`render_svg(series)` takes a `ProfileSeries` (or its JSON dict) and returns a standalone SVG
document: memory (MiB) above, CPU (cores) below, on a shared time axis.
"""

from __future__ import annotations

import math
from typing import Any
from xml.sax.saxutils import escape

from sage_common.schemas import ProfileSeries

MiB = 1 << 20
_W, _PANEL_H, _LEFT, _RIGHT, _TOP, _GAP, _BOTTOM = 720, 150, 64, 16, 36, 40, 36


def _nice_max(value: float) -> float:
    """A round upper bound for an axis (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return float(step * exp)
    return float(10 * exp)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def _panel(
    t: list[float], ys: list[float], *, top: float, t_max: float, label: str, color: str
) -> list[str]:
    y_max = _nice_max(max(ys, default=0.0))
    plot_w = _W - _LEFT - _RIGHT

    def x(v: float) -> float:
        return _LEFT + plot_w * (v / t_max if t_max else 0)

    def y(v: float) -> float:
        return top + _PANEL_H * (1 - v / y_max)

    parts = [
        f'<rect x="{_LEFT}" y="{top}" width="{plot_w}" height="{_PANEL_H}" fill="#fafafa" '
        'stroke="#ccc"/>',
        f'<text x="{_LEFT}" y="{top - 8}" font-size="12" fill="#333">{escape(label)}</text>',
    ]
    for k in range(5):
        value = y_max * k / 4
        yy = y(value)
        parts.append(
            f'<line x1="{_LEFT}" y1="{yy:.1f}" x2="{_W - _RIGHT}" y2="{yy:.1f}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{_LEFT - 6}" y="{yy + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="#666">{_fmt(value)}</text>'
        )
    if t:
        points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(t, ys, strict=True))
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>'
        )
    return parts


def render_svg(series: ProfileSeries | dict[str, Any], *, title: str = "") -> str:
    """The chart as an SVG document (a string), ready to write to `profile.svg`."""
    s = series if isinstance(series, ProfileSeries) else ProfileSeries.model_validate(series)
    t = list(s.t)
    t_max = _nice_max(max(t, default=0.0))
    height = _TOP + 2 * _PANEL_H + _GAP + _BOTTOM
    heading = title or f"{s.architecture}, run {s.repetition}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}" font-family="sans-serif">',
        f'<rect width="{_W}" height="{height}" fill="white"/>',
        f'<text x="{_LEFT}" y="16" font-size="14" fill="#000">{escape(heading)}</text>',
    ]
    parts += _panel(
        t,
        [m / MiB for m in s.memory_bytes],
        top=_TOP,
        t_max=t_max,
        label="memory (MiB)",
        color="#1f77b4",
    )
    cpu_top = _TOP + _PANEL_H + _GAP
    parts += _panel(
        t, list(s.cpu_cores), top=cpu_top, t_max=t_max, label="CPU (cores)", color="#d62728"
    )
    axis_y = cpu_top + _PANEL_H
    plot_w = _W - _LEFT - _RIGHT
    for k in range(5):
        value = t_max * k / 4
        xx = _LEFT + plot_w * k / 4
        parts.append(
            f'<text x="{xx:.1f}" y="{axis_y + 14}" font-size="10" text-anchor="middle" '
            f'fill="#666">{_fmt(value)}</text>'
        )
    parts.append(
        f'<text x="{_LEFT + plot_w / 2:.1f}" y="{axis_y + 30}" font-size="11" '
        'text-anchor="middle" fill="#333">seconds</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
