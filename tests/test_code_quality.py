"""The house rules that tools can check, run with the suite so CI enforces them.

ruff (lint and format) on everything; `mypy --strict` on libs/common, plain mypy on the services
and the client.
"""

from __future__ import annotations

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
