"""The SVG chart of a run's memory and CPU."""

from __future__ import annotations

from xml.etree import ElementTree

from sage_common.schemas import ProfileSeries
from sage_profiler.chart import render_svg


def test_chart_is_valid_svg_with_one_line_per_measure() -> None:
    series = ProfileSeries(
        architecture="linux/amd64",
        repetition=1,
        interval_seconds=0.1,
        t=[0.0, 0.1, 0.2, 0.3],
        memory_bytes=[0, 1 << 20, 64 << 20, 64 << 20],
        cpu_cores=[0.0, 1.0, 0.5, 0.0],
    )
    svg = render_svg(series.model_dump(mode="json"), title="ns/app:1 <amd64>")
    root = ElementTree.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    lines = root.findall(f"{ns}polyline")
    assert len(lines) == 2
    assert len(lines[0].get("points").split()) == 4
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "ns/app:1 <amd64>" in texts and "memory (MiB)" in texts and "CPU (cores)" in texts
    assert "100" in texts  # the memory axis tops out at a round 100 MiB


def test_an_empty_series_still_renders() -> None:
    series = ProfileSeries(
        architecture="linux/amd64",
        repetition=1,
        interval_seconds=0.1,
        t=[],
        memory_bytes=[],
        cpu_cores=[],
    )
    assert (
        ElementTree.fromstring(render_svg(series)).findall("{http://www.w3.org/2000/svg}polyline")
        == []
    )
