"""An in-memory `Store` for unit tests of the profiler's use cases: same answers, no database.

`profiles` holds the profile kept per build, `events` what was queued for the bus; a
transaction from `transaction()` is undone when its block raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import cast

import asyncpg

from sage_common.events import CloudEvent
from sage_common.schemas import ProfileDone

from .store import Store

# What the fake hands out as a connection: its methods take one, as the real store's do.
CONNECTION = cast(asyncpg.Connection, object())


class MemoryStore(Store):
    """`Store` on dicts; every query of the real one is overridden (a test checks)."""

    def __init__(self) -> None:
        self.profiles: dict[str, ProfileDone] = {}  # build id -> its one profile
        self.events: list[CloudEvent] = []
        self.depth = 0  # transactions open: events are queued only inside one

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """What the `WorkConsumer` opens around `accept` and `record`."""
        saved = (dict(self.profiles), list(self.events))
        self.depth += 1
        try:
            yield CONNECTION
        except BaseException:
            self.profiles, self.events = saved
            raise
        finally:
            self.depth -= 1

    async def enqueue(self, conn: asyncpg.Connection, event: CloudEvent) -> None:
        if not self.depth:
            raise RuntimeError(
                "enqueue() must run inside the transaction of the change it announces"
            )
        self.events.append(event)

    async def has_profile(self, conn: asyncpg.Connection, build_id: str) -> bool:
        return build_id in self.profiles

    async def save_profile(self, conn: asyncpg.Connection, profile: ProfileDone) -> bool:
        taken = {p.profile_id for p in self.profiles.values()}
        if profile.build_id in self.profiles or profile.profile_id in taken:
            return False
        self.profiles[profile.build_id] = profile
        return True
