"""Fixtures of the ECR's unit tests: the use cases on the in-memory store (`store_memory`)."""

from __future__ import annotations

import pytest

from sage_ecr.service import Ecr
from sage_ecr.store_memory import MemoryStore
from tests.support.ecr_memory import Given


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def ecr(store: MemoryStore) -> Ecr:
    return Ecr(store=store)


@pytest.fixture
def given(ecr: Ecr, store: MemoryStore) -> Given:
    return Given(ecr, store)
