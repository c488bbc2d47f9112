"""`make run` restarts a service that dies, backing off as an orchestrator does."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def devstack():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("devstack", ROOT / "scripts" / "devstack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["devstack"] = module
    spec.loader.exec_module(module)
    return module


def test_restart_back_off_doubles_to_its_cap_and_resets_after_a_stable_run() -> None:
    policy = devstack().RestartPolicy(first=1.0, cap=8.0, stable=300.0)
    policy.started(0.0)

    delays = [policy.delay(float(t)) for t in range(6)]  # a service that dies at once, again

    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    policy.started(100.0)
    assert policy.delay(401.0) == 1.0  # it ran for five minutes: a fresh failure
