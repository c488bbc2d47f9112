"""The fake store stands in for every query of the real one, so no use case reaches SQL in a unit
test: `MemorySession` subclasses `PgSession` and must override each of its methods."""

from __future__ import annotations

import inspect

from sage_ecr.store import PgSession
from sage_ecr.store_memory import MemorySession


def _public_methods(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_the_fake_session_overrides_every_method_of_the_real_one() -> None:
    real = _public_methods(PgSession)
    fake = _public_methods(MemorySession)
    left_to_sql = sorted(name for name, member in real.items() if fake[name] is member)
    assert left_to_sql == []


def test_the_fake_keeps_the_real_signatures() -> None:
    real = _public_methods(PgSession)
    fake = _public_methods(MemorySession)
    changed = [
        name
        for name in real
        if list(inspect.signature(real[name]).parameters)  # type: ignore[arg-type]
        != list(inspect.signature(fake[name]).parameters)  # type: ignore[arg-type]
    ]
    assert changed == []
