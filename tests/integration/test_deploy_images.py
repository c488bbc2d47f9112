"""The services' Dockerfiles, checked statically.

The images are built and run for real by test_images_pipeline.py; here each Dockerfile is also
parsed and held to the rules an operator relies on: pinned bases, a separate
build stage, a final stage without build tools, a numeric non-root user, one process, a health
check on the port the service's Config listens on; and every third-party module a service
imports is installed in its image (resolved from the packages' metadata in this venv).
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata as md
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
# service directory -> (package, distribution)
SERVICES = {
    "auth": ("sage_auth", "sage-auth"),
    "ecr-api": ("sage_ecr", "sage-ecr"),
    "storage": ("sage_storage", "sage-storage"),
    "builder": ("sage_builder", "sage-builder"),
    "profiler": ("sage_profiler", "sage-profiler"),
}
PINNED = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "cargo", "rustc", "-dev")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.instructions if i == instruction]


def parse_dockerfile(path: Path) -> list[Stage]:
    """Stages of a Dockerfile: instructions with continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[Stage] = []
    for line in logical:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif instruction == "ARG" and not stages:
            continue
        else:
            stages[-1].instructions.append((instruction, rest.strip()))
    return stages


def service_config(service: str) -> type:
    return importlib.import_module(f"{SERVICES[service][0]}.config").Config


@pytest.fixture(scope="module", params=sorted(SERVICES))
def image(request: pytest.FixtureRequest) -> tuple[str, list[Stage]]:
    service = request.param
    return service, parse_dockerfile(ROOT / "services" / service / "Dockerfile")


def test_images_are_multi_stage_from_pinned_bases(image: tuple[str, list[Stage]]) -> None:
    service, stages = image
    assert len(stages) >= 2, f"{service}: build and runtime stages expected"
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.base in names:
            continue
        assert PINNED.match(stage.base) and (":" in stage.base or "@" in stage.base), (
            f"{service}: {stage.base} is not pinned to an exact version or digest"
        )
    final = stages[-1]
    assert final.base.startswith("python:3.11.") and "slim" in final.base, final.base
    assert any("--from=" in a for a in final.args("COPY")), (
        f"{service}: nothing from the build stage"
    )


def test_final_stage_has_no_build_tools(image: tuple[str, list[Stage]]) -> None:
    service, stages = image
    for run in stages[-1].args("RUN"):
        words = re.split(r"[\s;&|]+", run)
        assert "pip" not in words and "wheel" not in words, f"{service}: builds in the final stage"
        for word in words:
            assert not any(word == t or (t == "-dev" and word.endswith(t)) for t in BUILD_TOOLS), (
                f"{service}: the final stage installs {word}"
            )


def test_runs_as_a_numeric_non_root_user(image: tuple[str, list[Stage]]) -> None:
    service, stages = image
    users = stages[-1].args("USER")
    assert users, f"{service}: no USER"
    uid = users[-1].split(":")[0]
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0, f"{service}: USER {users[-1]}"


def test_one_process_with_a_health_check_on_the_configured_port(
    image: tuple[str, list[Stage]],
) -> None:
    service, stages = image
    package = SERVICES[service][0]
    config = service_config(service)
    port = config.model_fields["port"].default
    prefix = config.model_config["env_prefix"]
    final = stages[-1]
    entrypoint = final.args("ENTRYPOINT")
    assert entrypoint and ast.literal_eval(entrypoint[-1]) == ["python", "-m", package]
    assert not final.args("CMD"), f"{service}: ENTRYPOINT is the one process"
    assert final.args("EXPOSE") == [str(port)]
    health = final.args("HEALTHCHECK")
    assert len(health) == 1 and "CMD" in health[0]
    check = health[0]
    assert "/healthz" in check and f"'{port}'" in check and f"{prefix}PORT" in check
    assert "curl" not in check and "wget" not in check, "the slim image has neither"


def test_image_environment_names_are_configuration_fields(
    image: tuple[str, list[Stage]],
) -> None:
    service, stages = image
    config = service_config(service)
    prefix = config.model_config["env_prefix"]
    fields = {prefix + name.upper() for name in config.model_fields}
    env: dict[str, str] = {}
    for line in stages[-1].args("ENV"):
        for word in shlex.split(line):
            key, _, value = word.partition("=")
            env[key] = value
    assert env.get(f"{prefix}HOST") == "0.0.0.0", "a container must listen beyond loopback"
    unknown = {k for k in env if k.startswith("SAGE_") and k not in fields}
    assert not unknown, f"{service}: {unknown} are not settings of {config.__module__}"


def _installed_names(stage: Stage) -> list[str]:
    """The distributions named to `pip install --no-index --find-links /wheels` in the build."""
    for run in stage.args("RUN"):
        for command in run.split("&&"):
            words = command.split()
            if "--no-index" in words and "--find-links" in words:
                return words[words.index("--find-links") + 2 :]
    raise AssertionError("no `pip install --no-index --find-links /wheels ...` in the build stage")


def _closure(names: list[str]) -> set[str]:
    """Every distribution installed by installing `names`, from this venv's metadata."""
    seen: set[str] = set()
    todo: list[str] = []
    for word in names:  # e.g. sage-ecr, or 'sage-profiler[gpu]' with an extra
        req = Requirement(word.strip("'\""))
        todo.append(req.name)
        todo += _extra_requirements(req.name, req.extras)
    while todo:
        name = md.distribution(todo.pop()).metadata["Name"].lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for spec in md.requires(name) or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
                todo += _extra_requirements(req.name, req.extras)  # pyjwt[crypto] and the like
    return seen


def _extra_requirements(name: str, extras: set[str]) -> list[str]:
    """The distributions that `name[extra]` adds for each of `extras`."""
    found = []
    for spec in md.requires(name) or []:
        req = Requirement(spec)
        if req.marker and any(req.marker.evaluate({"extra": extra}) for extra in extras):
            found.append(req.name)
    return found


def _parse(source: str) -> ast.Module:
    """`ast.parse`, again where CPython 3.11 wrongly failed: its AST builder keeps one recursion
    count for all threads (python/cpython#106905), so a traceback formatted on another thread
    meanwhile (3.11's tracebacks parse source to place their carets) can raise SystemError."""
    for attempt in range(3):
        try:
            return ast.parse(source)
        except SystemError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _imports(package_dir: Path) -> set[str]:
    """Top-level modules imported by the package's code (test helpers left out) and by every
    module of sage_common that it uses, directly or through other sage_common modules."""
    common = ROOT / "libs" / "common" / "sage_common"
    found: set[str] = set()
    files = [p for p in package_dir.rglob("*.py") if not _test_helper(p.relative_to(package_dir))]
    seen: set[Path] = set()
    while files:
        path = files.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(_parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and path.is_relative_to(common):
                base = path.parent.parents[node.level - 2] if node.level > 1 else path.parent
                rel = base.relative_to(common.parent).parts
                module = ".".join(rel + tuple(node.module.split(".")) if node.module else rel)
                names = [module] + [f"{module}.{a.name}" for a in node.names]
            else:
                continue
            found |= {n.split(".")[0] for n in names}
            files += [f for n in names if n.startswith("sage_common") and (f := _source(n))]
    return found


def _test_helper(relative: Path) -> bool:
    """Test helpers: never imported by the running service."""
    return "testing" in relative.parts or relative.stem in ("fakes", "testing")


def _source(module: str) -> Path | None:
    """The file of a sage_common module (or package), None for a name inside a module."""
    path = ROOT / "libs" / "common" / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_every_imported_module_is_installed_in_the_image(image: tuple[str, list[Stage]]) -> None:
    service, stages = image
    package, _ = SERVICES[service]
    installed = _closure(_installed_names(stages[0]))
    providers = md.packages_distributions()
    missing = {}
    for module in _imports(ROOT / "services" / service / package):
        if module in sys.stdlib_module_names or module == package:
            continue
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        if not dists & installed:
            missing[module] = sorted(dists) or "not installed here either"
    assert not missing, f"{service}: imported but not installed in the image: {missing}"


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""

    def regex(pattern: str) -> re.Pattern[str]:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + "$")

    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        rx = regex(pattern.lstrip("!").rstrip("/"))
        if any(rx.match(c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_sends_what_the_images_copy_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = ["constraints.txt", "libs/common/pyproject.toml", "libs/common/sage_common/db.py"]
    for service, (package, _) in SERVICES.items():
        needed += [f"services/{service}/pyproject.toml", f"services/{service}/{package}/app.py"]
        needed += [
            str(p.relative_to(ROOT))
            for p in (ROOT / "services" / service / package / "migrations").glob("*.sql")
        ]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not _dockerignore_excludes(path, patterns), f"{path} would not reach the build"
    for path in [
        "var/stack.env",
        ".venv/bin/python",
        "services/auth/tests/test_x.py",
        ".git/HEAD",
        "libs/common/sage_common/__pycache__/db.cpython-311.pyc",
        "docs/operations.md",
    ]:
        assert _dockerignore_excludes(path, patterns), f"{path} would be sent to the build"
