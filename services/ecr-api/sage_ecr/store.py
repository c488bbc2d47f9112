"""The store the ECR's use cases take: a session per unit of work, its SQL split by topic.

`async with store.transaction() as tx:` gives a session whose writes and the events it queues
(`tx.enqueue`, the outbox) commit together or not at all; `store.read()` a session outside any
transaction. `PgStore` runs on Postgres (`store_*.py`); `memory.py` is the fake for unit tests.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from sage_common.bus import enqueue
from sage_common.events import CloudEvent

from .acl import Grant
from .records import (
    App,
    Build,
    Deletion,
    HistoryEntry,
    MetaFileRow,
    Namespace,
    PushedBuild,
    Repository,
)
from .store_apps import AppFilter, AppsSql, Viewer
from .store_builds import BuildsSql
from .store_catalogue import CatalogueSql, RepoFilter
from .store_images import ImagesSql
from .store_listing import ListingSql, Page
from .store_meta import MetaSql


class Session(Protocol):
    """What a use case may read and write in one unit of work (the `*Sql` classes say how)."""

    # namespaces, repositories and their grants
    async def get_namespace(self, name: str) -> Namespace | None: ...
    async def create_namespace(self, name: str, owner: str) -> bool: ...
    async def delete_namespace(self, name: str) -> None: ...
    async def count_repositories(self, namespace: str) -> int: ...
    async def list_namespaces(
        self, username: str | None, groups: list[str], everything: bool
    ) -> list[Namespace]: ...
    async def get_repository(self, namespace: str, name: str) -> Repository | None: ...
    async def create_repository(self, namespace: str, name: str, owner: str) -> bool: ...
    async def delete_repository(self, namespace: str, name: str) -> None: ...
    async def count_apps(self, namespace: str, name: str) -> int: ...
    async def list_repositories(
        self,
        namespace: str | None,
        username: str | None,
        groups: list[str],
        everything: bool,
        flt: RepoFilter | None = None,
    ) -> list[Repository]: ...
    async def grants(self, resource_type: str, resource_name: str) -> list[Grant]: ...
    async def grants_of(self, resource_type: str, names: list[str]) -> dict[str, list[Grant]]: ...
    async def add_grant(self, resource_type: str, resource_name: str, grant: Grant) -> int: ...
    async def delete_grants(
        self,
        resource_type: str,
        resource_name: str,
        owner: str,
        grantee_type: str | None,
        grantee: str | None,
        permission: str | None,
    ) -> int: ...

    # app versions and their documents
    async def insert_app(
        self,
        *,
        namespace: str,
        name: str,
        version: str,
        version_key: str,
        owner: str,
        spec: dict[str, Any],
        architectures: list[str],
        gpu: str,
        state: str,
        search: tuple[str, str, str],
    ) -> App | None: ...
    async def replace_spec(
        self,
        app_id: int,
        *,
        spec: dict[str, Any],
        architectures: list[str],
        gpu: str,
        search: tuple[str, str, str],
    ) -> None: ...
    async def get_app(
        self, namespace: str, name: str, version: str, *, for_update: bool = False
    ) -> App | None: ...
    async def get_app_by_id(self, app_id: int, *, for_update: bool = False) -> App | None: ...
    async def app_document(self, app_id: int) -> str: ...
    async def update_app(self, app_id: int, **values: Any) -> None: ...
    async def save_doc(self, app_id: int, doc: dict[str, Any], doc_version: int) -> None: ...
    async def lock_stale_docs(self, doc_version: int, limit: int) -> list[int]: ...
    async def delete_app(self, app_id: int) -> None: ...
    async def list_apps(
        self, viewer: Viewer, flt: AppFilter, after: list[str] | None, limit: int
    ) -> Page: ...

    # builds and history
    async def insert_build(self, app_id: int, build_number: int, requested_by: str) -> Build: ...
    async def get_build(self, build_id: uuid.UUID | None) -> Build | None: ...
    async def get_build_by_number(self, app_id: int, build_number: int) -> Build | None: ...
    async def record_started(
        self, build_id: uuid.UUID, at: datetime, event_id: str, log_location: str | None = None
    ) -> bool: ...
    async def record_done(
        self, build_id: uuid.UUID, status: str, data: dict[str, Any], event_id: str
    ) -> bool: ...
    async def record_profile(
        self, build_id: uuid.UUID, status: str, data: dict[str, Any], event_id: str
    ) -> bool: ...
    async def add_history(
        self,
        app_id: int,
        source: str | None,
        target: str,
        cause: str,
        *,
        event_id: str | None = None,
        build_number: int | None = None,
        actor: str | None = None,
    ) -> None: ...
    async def history(self, app_id: int) -> list[HistoryEntry]: ...

    # images of deleted versions, ecr-meta files
    async def pushed_builds(self, app_id: int) -> list[PushedBuild]: ...
    async def add_deletion(
        self,
        event_id: uuid.UUID,
        namespace: str,
        name: str,
        version: str,
        owner: str,
        requested_by: str,
    ) -> None: ...
    async def pending_deletions(
        self, namespace: str, name: str | None = None, version: str | None = None
    ) -> int: ...
    async def confirm_deletion(self, event_id: uuid.UUID, app_id: str) -> Deletion | None: ...
    async def replace_meta_files(
        self, app_id: int, build_id: uuid.UUID, files: list[MetaFileRow]
    ) -> None: ...
    async def meta_files(self, app_id: int) -> list[MetaFileRow]: ...
    async def meta_file(self, app_id: int, file_name: str) -> MetaFileRow | None: ...

    async def enqueue(self, event: CloudEvent) -> None:
        """Queue an event in this unit of work; it is published only if the work commits."""


class Store(Protocol):
    def read(self) -> AbstractAsyncContextManager[Session]: ...
    def transaction(self) -> AbstractAsyncContextManager[Session]: ...
    def joined(self, conn: asyncpg.Connection) -> Session:
        """The session on a connection whose transaction the caller holds (a consumer's, which
        the bus opened to record the event id)."""


class PgSession(CatalogueSql, AppsSql, ListingSql, BuildsSql, ImagesSql, MetaSql):
    """The session on one Postgres connection; the caller holds its transaction (a consumer's
    `handle` wraps the one the bus opened to record the event id)."""

    async def enqueue(self, event: CloudEvent) -> None:
        await enqueue(self.conn, event)


@dataclass
class PgStore:
    pool: asyncpg.Pool

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Session]:
        async with self.pool.acquire() as conn:
            yield PgSession(conn)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield PgSession(conn)

    def joined(self, conn: asyncpg.Connection) -> Session:
        return PgSession(conn)
