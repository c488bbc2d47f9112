"""The SVG chart of a profile's memory and CPU, from the JSON the ECR serves."""

from __future__ import annotations

import ast
from pathlib import Path
from xml.etree import ElementTree

from sage_client.chart import render_svg

SVG = "{http://www.w3.org/2000/svg}"
PACKAGE = Path(__file__).resolve().parents[1] / "sage_client"


def series(arch: str = "linux/amd64", **columns: list) -> dict:
    base = {
        "architecture": arch,
        "repetition": 1,
        "interval_seconds": 0.1,
        "t": [0.0, 0.1, 0.2, 0.3],
        "memory_bytes": [0, 1 << 20, 64 << 20, 64 << 20],
        "cpu_cores": [0.0, 1.0, 0.5, 0.0],
    }
    return {**base, **columns}


def test_chart_is_valid_svg_with_one_line_per_measure() -> None:
    svg = render_svg(series(), title="ns/app:1 <amd64>")
    root = ElementTree.fromstring(svg)
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2
    assert len(lines[0].get("points").split()) == 4
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "ns/app:1 <amd64>" in texts and "memory (MiB)" in texts and "CPU (cores)" in texts
    assert "100" in texts  # the memory axis tops out at a round 100 MiB


def test_an_empty_series_still_renders() -> None:
    empty = series(t=[], memory_bytes=[], cpu_cores=[])
    assert ElementTree.fromstring(render_svg(empty)).findall(f"{SVG}polyline") == []
    assert ElementTree.fromstring(render_svg([])).findall(f"{SVG}polyline") == []


def test_every_series_gets_its_own_line_colour_and_legend_entry() -> None:
    arm = series("linux/arm64", label="linux/arm64, run 1 (emulated)")
    root = ElementTree.fromstring(render_svg([series(), arm], title="two"))
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 4  # memory and CPU for each
    assert lines[0].get("stroke") != lines[1].get("stroke")
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "linux/amd64, run 1" in texts and "linux/arm64, run 1 (emulated)" in texts


def test_gaps_and_uneven_columns_are_skipped_not_fatal() -> None:
    ragged = series(t=[0.0, 0.1, 0.2], memory_bytes=[1 << 20, None, 2 << 20, 9], cpu_cores=[0.5])
    lines = ElementTree.fromstring(render_svg(ragged)).findall(f"{SVG}polyline")
    assert [len(line.get("points").split()) for line in lines] == [2, 1]


def test_the_client_package_imports_no_service_code() -> None:
    """`sage` installs alone: nothing in sage_client may import a service or the shared library."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    assert not {m for m in found if m.startswith("sage_") and m != "sage_client"}
