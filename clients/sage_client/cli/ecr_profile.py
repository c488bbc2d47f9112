"""`sage ecr app profile`: the profiler's verdict, measurements and conclusions, and a chart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ..chart import render_svg
from ..ecr import AppId
from .common import Failed, global_options, human_size, print_json, run, say, state, table
from .ecr_types import APP_ID

RUN_COLUMNS = ("architecture", "run", "exit", "passed", "peak memory", "CPU s", "cores", "wall s")
FIT_COLUMNS = ("node", "architecture", "copies", "limited by")


def _num(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else str(round(value))


def _run_row(run_: dict[str, Any]) -> list[Any]:
    notes = [
        n
        for n, on in (
            ("OOM", run_.get("oom_killed")),
            ("timed out", run_.get("timed_out")),
            ("emulated", run_.get("emulated")),
        )
        if on
    ]
    passed = run_.get("passed")
    verdict = "" if passed is None else ("yes" if passed else "no")
    return [
        run_.get("architecture"),
        run_.get("repetition"),
        run_.get("exit_code"),
        " ".join([verdict, *(f"({n})" for n in notes)]).strip(),
        human_size(run_.get("peak_memory_bytes")),
        _num(run_.get("cpu_seconds")),
        _num(run_.get("cpu_cores")),
        _num(run_.get("wall_seconds")),
    ]


def _limits(rec: dict[str, Any]) -> str:
    parts = []
    if rec.get("memory_limit_bytes") is not None:
        parts.append(
            f"memory {human_size(rec['memory_limit_bytes'])}"
            f" (request {human_size(rec.get('memory_request_bytes'))})"
        )
    if rec.get("cpu_limit") is not None:
        parts.append(f"CPU {_num(rec['cpu_limit'])} cores (request {_num(rec.get('cpu_request'))})")
    if rec.get("gpu_memory_bytes"):
        parts.append(f"GPU memory {human_size(rec['gpu_memory_bytes'])}")
    basis = f" [{rec['basis']}]" if rec.get("basis") else ""
    return ("; ".join(parts) or "none could be derived") + basis


def _concurrency(c: dict[str, Any]) -> str:
    if not c:
        return "not reported"
    if not c.get("tested"):
        return f"not tested ({c.get('reason') or 'no reason given'})"
    copies, passed = c.get("copies"), c.get("passed")
    text = f"{copies} copies side by side, {passed} passed"
    if c.get("slowdown") is not None:
        text += f", {_num(c['slowdown'])}x the time alone"
    return text + (" (emulated)" if c.get("emulated") else "")


def _period(p: dict[str, Any]) -> str:
    if not p or p.get("shortest_seconds") is None:
        return f"not determined ({p.get('reason') or 'nothing timed'})" if p else "not reported"
    text = (
        f"every {p.get('shortest_minutes')} min at the shortest ({_num(p['shortest_seconds'])} s)"
    )
    if p.get("declared_seconds") is not None:
        met = {True: "met", False: "NOT met", None: "unknown"}[p.get("met")]
        text += f"; declared every {_num(p['declared_seconds'])} s: {met}"
    return text


def _ceilings(c: dict[str, Any]) -> str:
    """The ceilings the runs had; the memory one says when the app's min_memory set it."""
    text = f"memory {human_size(c.get('memory_bytes'))}, CPU {_num(c.get('cpus'))} cores"
    source = c.get("memory_from")
    if source == "hardware.min_memory":
        text += " (memory raised to the app's hardware.min_memory)"
    elif source == "maximum":
        text += (
            f" (hardware.min_memory asks for {human_size(c.get('min_memory_bytes'))}; "
            "memory held to the profiler's maximum)"
        )
    return text


def print_summary(app_id: AppId, found: dict[str, Any]) -> None:
    """The verdict and reason, the runs, then the conclusions a scheduler uses."""
    verdict = str(found.get("status") or "unknown")
    say(f"{app_id}: profile {verdict} (build {found.get('build_number', '?')})")
    if found.get("reason"):
        say(f"  reason: {found['reason']}")
    runs = found.get("runs") or []
    if runs:
        table(RUN_COLUMNS, [_run_row(r) for r in runs])
    if found.get("ceilings"):
        say(f"ceilings: {_ceilings(found['ceilings'])}")
    say(f"recommended limits: {_limits(found.get('recommended') or {})}")
    say(f"concurrency: {_concurrency(found.get('concurrency') or {})}")
    say(f"period: {_period(found.get('period') or {})}")
    fits = found.get("node_fit") or {}
    if fits:
        rows = [
            [name, f.get("architecture"), f.get("copies"), f.get("limited_by")]
            for name, f in sorted(fits.items())
            if isinstance(f, dict)
        ]
        say("node fit:")
        table(FIT_COLUMNS, rows)


def _labelled(found: dict[str, Any]) -> list[dict[str, Any]]:
    """The series, each labelled with its architecture and run, and whether it was emulated."""
    emulated = {
        (r.get("architecture"), r.get("repetition"))
        for r in found.get("runs") or []
        if r.get("emulated")
    }
    out = []
    for s in found.get("series") or []:
        key = (s.get("architecture"), s.get("repetition"))
        label = f"{key[0]}, run {key[1]}" + (" (emulated)" if key in emulated else "")
        out.append({**s, "label": label})
    return out


def save_chart(path: Path, app_id: AppId, found: dict[str, Any], *, force: bool) -> bool:
    """Write the SVG chart; False when the profile has no time series to draw."""
    series = _labelled(found)
    if not series:
        return False
    svg = render_svg(series, title=f"{app_id}: memory and CPU over time")
    if path.exists() and not force:
        raise Failed(f"{path} exists: pass --force to replace it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(svg, encoding="utf-8")
    os.replace(tmp, path)
    return True


@click.command("profile")
@click.argument("app_id", metavar="NS/NAME:VERSION", type=APP_ID)
@click.option(
    "--chart",
    "chart",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to save the SVG chart [default: NAME-VERSION-profile.svg here; with --json: none].",
)
@click.option("--no-chart", is_flag=True, help="Print the summary only.")
@click.option("--force", is_flag=True, help="Replace the chart file if it exists.")
@global_options
def profile(app_id: AppId, chart: Path | None, no_chart: bool, force: bool) -> None:
    """Show the profile: verdict, runs, recommended limits, concurrency, period and node fit,
    and save a chart of memory and CPU over time (SVG)."""
    if chart is None and not no_chart and not state().json:
        chart = Path(f"{app_id.name}-{app_id.version}-profile.svg")
    if no_chart:
        chart = None
    if chart is not None:
        if chart.suffix.lower() != ".svg":
            raise Failed(f"the chart is SVG: name the file .svg, not {chart.name}")
        if chart.exists() and not force:
            raise Failed(f"{chart} exists: pass --force to replace it")
    found = run(lambda sage: sage.ecr.profile(app_id))
    if state().json:
        print_json(found)
    else:
        print_summary(app_id, found)
    if chart is None:
        return
    if save_chart(chart, app_id, found, force=force):
        say(f"chart: {chart}", err=state().json)
    else:
        say("no time series in this profile: no chart written", err=True)
