"""An in-memory `Store` for the use cases' unit tests: the same sessions as `PgStore`, on lists.

Not kept: row locks (a unit test runs one thing at a time) and Postgres' full-text search (`q`
matches when every word is in the searched text). `tests/integration/test_ecr_store_contract.py`
runs the same use cases on both, so they agree.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import AsyncIterator

from sage_common.events import CloudEvent

from .store import PgSession, Session
from .store_memory_apps import MemoryApps
from .store_memory_catalogue import Tables


class MemorySession(MemoryApps, PgSession):
    """One unit of work on `Tables`: every method of `PgSession`, none of its SQL."""

    async def enqueue(self, event: CloudEvent) -> None:
        self.t.outbox.append(event)


class MemoryStore:
    """`Store` on `Tables`; `events` are those queued by the transactions that committed."""

    def __init__(self) -> None:
        self.tables = Tables()
        self.ids = itertools.count(1)

    @property
    def events(self) -> list[CloudEvent]:
        return list(self.tables.outbox)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Session]:
        yield MemorySession(self.tables, self.ids)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        work = copy.deepcopy(self.tables)
        yield MemorySession(work, self.ids)
        self.tables = work

    def joined(self, conn: object) -> Session:
        """Writes straight through: the caller's transaction is not modelled here."""
        return MemorySession(self.tables, self.ids)
