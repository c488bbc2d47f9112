"""An SVG chart of memory and CPU over time from a profile's `series`; standard library only.

`render_svg(series)` takes one series or a list of them as `profile.done` carries them (plain JSON
dicts: `architecture`, `repetition`, `t`, `memory_bytes`, `cpu_cores`, and an optional `label`)
and returns a standalone SVG document: memory (MiB) above, CPU (cores) below, one line per series
on a shared time axis. It lives in the client so that `sage ecr app profile` needs no service code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

MiB = 1 << 20
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
_W, _PANEL_H, _LEFT, _RIGHT, _TOP, _GAP, _BOTTOM = 720, 150, 64, 16, 36, 40, 36
_LEGEND_ROW = 16

Series = Mapping[str, Any]


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


def _numbers(values: Any) -> list[float | None]:
    out: list[float | None] = []
    for v in values or []:
        out.append(float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None)
    return out


def _points(series: Series, key: str, scale: float) -> list[tuple[float, float]]:
    """(t, value) pairs of one column, skipping gaps; columns of unequal length are cut short."""
    pairs = zip(_numbers(series.get("t")), _numbers(series.get(key)), strict=False)
    return [(t, v / scale) for t, v in pairs if t is not None and v is not None]


def label_of(series: Series) -> str:
    if series.get("label"):
        return str(series["label"])
    return f"{series.get('architecture', '?')}, run {series.get('repetition', '?')}"


def _panel(
    lines: list[list[tuple[float, float]]], *, top: float, t_max: float, label: str
) -> list[str]:
    y_max = _nice_max(max((v for line in lines for _, v in line), default=0.0))
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
    for n, line in enumerate(lines):
        if line:
            points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in line)
            parts.append(
                f'<polyline fill="none" stroke="{COLORS[n % len(COLORS)]}" stroke-width="1.5" '
                f'points="{points}"/>'
            )
    return parts


def render_svg(series: Series | Sequence[Series], *, title: str = "") -> str:
    """The chart as an SVG document (a string), ready to write to `profile.svg`."""
    many = [series] if isinstance(series, Mapping) else list(series)
    memory = [_points(s, "memory_bytes", MiB) for s in many]
    cpu = [_points(s, "cpu_cores", 1.0) for s in many]
    t_max = _nice_max(max((t for line in memory + cpu for t, _ in line), default=0.0))
    legend_h = _LEGEND_ROW * len(many) if len(many) > 1 else 0
    top = _TOP + legend_h
    height = top + 2 * _PANEL_H + _GAP + _BOTTOM
    heading = title or (label_of(many[0]) if many else "no measurements")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}" font-family="sans-serif">',
        f'<rect width="{_W}" height="{height}" fill="white"/>',
        f'<text x="{_LEFT}" y="16" font-size="14" fill="#000">{escape(heading)}</text>',
    ]
    if legend_h:
        for n, s in enumerate(many):
            yy = _TOP - 8 + _LEGEND_ROW * n
            color = COLORS[n % len(COLORS)]
            parts.append(
                f'<line x1="{_LEFT}" y1="{yy - 4}" x2="{_LEFT + 20}" y2="{yy - 4}" '
                f'stroke="{color}" stroke-width="3"/>'
            )
            parts.append(
                f'<text x="{_LEFT + 26}" y="{yy}" font-size="11" fill="#333">'
                f"{escape(label_of(s))}</text>"
            )
    parts += _panel(memory, top=top, t_max=t_max, label="memory (MiB)")
    cpu_top = top + _PANEL_H + _GAP
    parts += _panel(cpu, top=cpu_top, t_max=t_max, label="CPU (cores)")
    axis_y = cpu_top + _PANEL_H
    plot_w = _W - _LEFT - _RIGHT
    for k in range(5):
        parts.append(
            f'<text x="{_LEFT + plot_w * k / 4:.1f}" y="{axis_y + 14}" font-size="10" '
            f'text-anchor="middle" fill="#666">{_fmt(t_max * k / 4)}</text>'
        )
    parts.append(
        f'<text x="{_LEFT + plot_w / 2:.1f}" y="{axis_y + 30}" font-size="11" '
        'text-anchor="middle" fill="#333">seconds</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
