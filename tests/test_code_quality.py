"""The house rules that tools can check, run with the suite so CI enforces them.

ruff (lint and format) on everything; `mypy --strict` on libs/common, plain mypy on the services
and the client.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PACKAGES = [
    "services/auth/sage_auth",
    "services/ecr-api/sage_ecr",
    "services/builder/sage_builder",
    "services/profiler/sage_profiler",
    "services/storage/sage_storage",
    "clients/sage_client",
]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "command",
    [
        ("ruff", "check", "."),
        ("ruff", "format", "--check", "."),
        ("mypy", "--strict", "libs/common/sage_common"),
        ("mypy", *PACKAGES),
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict-common", "mypy-services"],
)
def test_code_passes(command: tuple[str, ...]) -> None:
    result = run(str(BIN / command[0]), *command[1:])
    assert result.returncode == 0, (
        f"{' '.join(command)}:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
    )


# ------------------------------------------------------------------ module names (patterns.md) ----
# The roles a split module is named after: `<role>_<topic>.py` (`handlers_login.py`), never
# `<topic>_<role>.py` (`login_handlers.py`). Other modules are named after their topic alone.
ROLES = ("handlers", "service", "store", "events", "models", "runner")
SERVICE_PACKAGES = [p for p in PACKAGES if p.startswith("services/")]


def _handlers(tree: ast.Module) -> list[str]:
    """Module-level aiohttp handlers: `async def x(request: web.Request) -> web.*Response`."""
    found = []
    for node in tree.body:
        if not isinstance(node, ast.AsyncFunctionDef) or len(node.args.args) != 1:
            continue
        arg, returns = node.args.args[0], ast.unparse(node.returns) if node.returns else ""
        if arg.annotation is not None and ast.unparse(arg.annotation) == "web.Request":
            if returns in ("web.Response", "web.StreamResponse"):
                found.append(node.name)
    return found


def naming_problems(package: Path) -> list[str]:
    problems = []
    for path in sorted(package.glob("*.py")):
        name = path.stem
        first, *rest = name.split("_")
        if name.startswith("__") or first in ROLES:
            pass
        elif roles := [part for part in rest if part in ROLES]:
            problems.append(f"{path.name}: a {roles[-1]} module is named {roles[-1]}_<topic>.py")
        tree = ast.parse(path.read_text())
        handlers = _handlers(tree)
        if handlers and first != "handlers":
            problems.append(f"{path.name} holds handlers ({', '.join(handlers)}): handlers_*.py")
        keys = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and ast.unparse(n.func) == "web.AppKey"
        ]
        if keys and name != "state":
            problems.append(f"{path.name} makes web.AppKeys: they live in state.py")
    return problems


@pytest.mark.parametrize("package", SERVICE_PACKAGES)
def test_service_modules_follow_the_naming_rule(package: str) -> None:
    assert naming_problems(ROOT / package) == []


def test_the_naming_rule_catches_what_it_names(tmp_path: Path) -> None:
    (tmp_path / "login_service.py").write_text("")
    (tmp_path / "transfer.py").write_text(
        "from aiohttp import web\n\n\n"
        "async def get(request: web.Request) -> web.Response:\n    return web.Response()\n"
    )
    (tmp_path / "handlers.py").write_text('from aiohttp import web\n\nKEY = web.AppKey("k", int)\n')
    (tmp_path / "service_login.py").write_text("")
    assert naming_problems(tmp_path) == [
        "handlers.py makes web.AppKeys: they live in state.py",
        "login_service.py: a service module is named service_<topic>.py",
        "transfer.py holds handlers (get): handlers_*.py",
    ]
