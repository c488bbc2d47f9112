"""An in-memory `Store` for unit tests of the builder's use cases: same answers, no database.

A transaction from `transaction()` is undone when its block raises; `events` holds what was
queued for the bus, `cancels` the cancel asked for each build (the first reason stays).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import cast

import asyncpg

from sage_common.events import CloudEvent
from sage_common.schemas import BuildDone

from .records import Build, Claim, Pushed
from .store import Store

# What the fake hands out as a connection: its methods take one, as the real store's do.
CONNECTION = cast(asyncpg.Connection, object())


class MemoryStore(Store):
    """`Store` on dicts; every query of the real one is overridden (a test checks)."""

    def __init__(self) -> None:
        self.builds: dict[str, Build] = {}  # a build that finishes moves last (see `finish`)
        self.cancels: dict[str, str] = {}  # build id -> the reason it was cancelled
        self.deleted: dict[str, str] = {}  # build id -> the app id it was deleted as
        self.events: list[CloudEvent] = []
        self.locked: list[str] = []  # repositories locked, in order
        self.depth = 0  # transactions open: events are queued only inside one

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        saved = (dict(self.builds), dict(self.cancels), dict(self.deleted), list(self.events))
        self.depth += 1
        try:
            yield CONNECTION
        except BaseException:
            self.builds, self.cancels, self.deleted, self.events = saved
            raise
        finally:
            self.depth -= 1

    async def enqueue(self, conn: asyncpg.Connection, event: CloudEvent) -> None:
        if not self.depth:
            raise RuntimeError(
                "enqueue() must run inside the transaction of the change it announces"
            )
        self.events.append(event)

    async def claim(self, conn: asyncpg.Connection, build_id: str, app_id: str) -> Claim:
        build = self.builds.get(build_id)
        if build is None:
            self.builds[build_id] = Build(build_id, app_id)
            return "new"
        if build.status != "running":
            return "finished"
        self.builds[build_id] = replace(build, attempts=build.attempts + 1)
        return "resumed"

    async def finish(self, conn: asyncpg.Connection, done: BuildDone) -> bool:
        build = self.builds.get(done.build_id)
        if build is None or build.status != "running":
            return False
        del self.builds[done.build_id]  # re-added last: `pushed` answers in finishing order
        self.builds[done.build_id] = replace(build, status=done.status, result=done)
        return True

    async def supersede(self, conn: asyncpg.Connection, app_id: str, build_id: str) -> list[str]:
        older = [
            b.build_id
            for b in self.builds.values()
            if b.app_id == app_id and b.status == "running" and b.build_id != build_id
        ]
        for old in older:
            self.cancels.setdefault(old, f"superseded by build {build_id}")
        return older

    async def fence(
        self,
        conn: asyncpg.Connection,
        app_id: str,
        build_ids: Sequence[str],
        event_id: str,
        requested_by: str,
    ) -> None:
        for build_id in build_ids:
            known = self.builds.get(build_id)
            if known is None or known.app_id == app_id:
                self.deleted.setdefault(build_id, app_id)
                self.cancels.setdefault(build_id, f"app deleted by {requested_by}")

    async def running(self, conn: asyncpg.Connection, build_ids: Sequence[str]) -> list[str]:
        return [b for b in build_ids if b in self.builds and self.builds[b].status == "running"]

    async def pushed(
        self, conn: asyncpg.Connection, app_id: str, build_ids: Sequence[str]
    ) -> Pushed:
        done = [
            b.result
            for b in self.builds.values()
            if b.build_id in build_ids and b.app_id == app_id and b.status == "success" and b.result
        ]
        indexes = tuple(r.index_digest for r in done if r.index_digest)
        return Pushed(indexes, tuple(i.digest for r in done for i in r.images if i.digest))

    async def in_use(
        self, conn: asyncpg.Connection, repository: str, app_id: str, digests: Sequence[str]
    ) -> list[str]:
        live = [
            b.result for b in self._others(repository, app_id) if b.status == "success" and b.result
        ]
        used = {r.index_digest for r in live} | {i.digest for r in live for i in r.images}
        return [d for d in digests if d in used]

    async def lock_repository(self, conn: asyncpg.Connection, repository: str) -> None:
        self.locked.append(repository)

    async def building_in(
        self, conn: asyncpg.Connection, repository: str, app_id: str
    ) -> list[str]:
        busy = (b.app_id for b in self._others(repository, app_id) if b.status == "running")
        return list(dict.fromkeys(busy))

    def _others(self, repository: str, app_id: str) -> list[Build]:
        """The builds of other versions of `repository` not deleted."""
        return [
            b
            for b in self.builds.values()
            if b.app_id.startswith(f"{repository}:")
            and b.app_id != app_id
            and b.build_id not in self.deleted
        ]
