"""docs/operations.md and deploy/grafana/dashboard.json against the code they describe.

The metrics are collected by importing every module of the shared library and the services in
a fresh interpreter and reading prometheus_client's registry, so a metric defined anywhere counts
and nothing other tests register does.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
PACKAGES = ["sage_common", "sage_auth", "sage_ecr", "sage_storage", "sage_builder", "sage_profiler"]
COLLECT = """
import importlib, json, pkgutil, sys
from prometheus_client import REGISTRY
for pkg in sys.argv[1:]:
    module = importlib.import_module(pkg)
    for info in pkgutil.walk_packages(module.__path__, pkg + "."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
families = {}
for collector in set(REGISTRY._names_to_collectors.values()):
    for metric in getattr(collector, "describe", lambda: [])():
        families[metric.name] = metric.type
print(json.dumps(families))
"""
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}


@pytest.fixture(scope="module")
def families() -> dict[str, str]:
    """Metric family -> type, for every sage_ metric the code defines."""
    result = subprocess.run(
        [sys.executable, "-c", COLLECT, *PACKAGES], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    return {name: kind for name, kind in found.items() if name.startswith("sage_")}


def _series(families: dict[str, str]) -> set[str]:
    return {name + s for name, kind in families.items() for s in SUFFIXES.get(kind, [""])}


def _panels() -> list[dict]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = []
    for panel in dashboard["panels"]:
        panels += [panel, *panel.get("panels", [])]
    return [p for p in panels if p["type"] != "row"]


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(sage_[a-z0-9_]+)\b", expr))


def test_every_dashboard_panel_queries_metrics_the_code_defines(families: dict[str, str]) -> None:
    assert {"sage_http_requests", "sage_builder_builds", "sage_profiles"} <= set(families)
    known = _series(families)
    panels = _panels()
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = _metric_names(target["expr"])
            assert names, f"{panel['title']}: queries no sage metric"
            assert names <= known, f"{panel['title']}: {names - known} are defined nowhere"


def test_every_metric_is_on_the_dashboard_and_in_the_operations_guide(
    families: dict[str, str],
) -> None:
    queried = set().union(*(_metric_names(t["expr"]) for p in _panels() for t in p["targets"]))
    guide = OPERATIONS.read_text()
    for name, kind in families.items():
        series = {name + s for s in SUFFIXES.get(kind, [""])}
        assert series & queried, f"{name} is on no dashboard panel"
        assert f"`{name}{SUFFIXES[kind][0] if kind == 'counter' else ''}" in guide, (
            f"{name} is not explained in docs/operations.md"
        )


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_config_reference", ROOT / "scripts" / "gen_config_reference.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_current() -> None:
    generator = _generator()
    text = OPERATIONS.read_text()
    assert generator.update(text, generator.render()) == text, (
        "docs/operations.md is stale: run .venv/bin/python scripts/gen_config_reference.py"
    )


def test_configuration_reference_lists_every_setting_under_its_variable() -> None:
    generator = _generator()
    section = generator.render()
    for name, cls in generator.config_classes().items():
        prefix = generator.env_prefix(cls)
        for field in cls.model_fields:
            base = f"`SAGE_AUTH_{field.upper()}`" in section  # a setting every service has
            assert base or f"`{prefix}{field.upper()}`" in section, (name, field)


def test_settings_named_in_the_deployment_docs_exist() -> None:
    generator = _generator()
    settings = set()
    for cls in generator.config_classes().values():
        settings |= {generator.env_prefix(cls) + f.upper() for f in cls.model_fields}
    prefixes = tuple(generator.env_prefix(c) for c in generator.config_classes().values())
    for doc in ("docs/operations.md", "docs/deploy.md", "docs/adr/0008-deployment.md"):
        named = set(re.findall(r"\b(SAGE_[A-Z0-9_]+[A-Z0-9])\b", (ROOT / doc).read_text()))
        unknown = {n for n in named if n.startswith(prefixes) and n not in settings}
        assert not unknown, f"{doc} names settings that do not exist: {unknown}"
