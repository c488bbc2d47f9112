"""The in-memory store's app versions, documents and listing, builds, history, deletions and
ecr-meta files: what `store_apps`, `store_builds`, `store_images` and `store_meta` do in SQL."""

from __future__ import annotations

import json
import uuid
from dataclasses import fields, replace
from datetime import datetime
from operator import attrgetter
from typing import Any

from .records import App, Build, Deletion, HistoryEntry, MetaFileRow
from .store_apps import AppFilter
from .store_catalogue import Viewer
from .store_listing import Page
from .store_memory_catalogue import MemoryCatalogue, now

_APP_FIELDS = {f.name for f in fields(App)}


class MemoryApps(MemoryCatalogue):
    """App versions and everything that hangs off them, on `Tables`."""

    def _app_row(self, app_id: int) -> App:
        app = self.t.apps.get(app_id)
        if app is None:
            raise LookupError(f"no app row {app_id}")
        return app

    # ---- app versions and their documents

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
    ) -> App | None:
        if (namespace, name) not in self.t.repositories:
            raise LookupError(f"no repository {namespace}/{name} for a version")  # the foreign key
        if await self.get_app(namespace, name, version) is not None:
            return None
        at = now()
        app = App(next(self.ids), namespace, name, version, version_key, owner, spec, state, at, at)
        self.t.apps[app.id] = app
        self.t.listed[app.id] = {"architectures": architectures, "gpu": gpu, "search": search}
        self.t.docs[app.id] = ({}, 0)
        return app

    async def replace_spec(
        self,
        app_id: int,
        *,
        spec: dict[str, Any],
        architectures: list[str],
        gpu: str,
        search: tuple[str, str, str],
    ) -> None:
        self.t.apps[app_id] = replace(self._app_row(app_id), spec=spec, updated_at=now())
        self.t.listed[app_id] = {"architectures": architectures, "gpu": gpu, "search": search}

    async def get_app(
        self, namespace: str, name: str, version: str, *, for_update: bool = False
    ) -> App | None:
        key = (namespace, name, version)
        return next(
            (a for a in self.t.apps.values() if (a.namespace, a.name, a.version) == key), None
        )

    async def get_app_by_id(self, app_id: int, *, for_update: bool = False) -> App | None:
        return self.t.apps.get(app_id)

    def _document(self, app: App) -> str:
        public = "true" if self._public(app.namespace, app.name) else "false"
        return f'{json.dumps(self.t.docs[app.id][0])[:-1]}, "public": {public}}}'

    async def app_document(self, app_id: int) -> str:
        return self._document(self._app_row(app_id))

    async def update_app(self, app_id: int, **values: Any) -> None:
        unknown = set(values) - _APP_FIELDS
        if unknown:
            raise KeyError(f"apps has no column {sorted(unknown)}")
        self.t.apps[app_id] = replace(self._app_row(app_id), **values, updated_at=now())

    async def save_doc(self, app_id: int, doc: dict[str, Any], doc_version: int) -> None:
        self.t.docs[app_id] = (json.loads(json.dumps(doc)), doc_version)

    async def lock_stale_docs(self, doc_version: int, limit: int) -> list[int]:
        return sorted(i for i, (_, v) in self.t.docs.items() if v < doc_version)[:limit]

    async def delete_app(self, app_id: int) -> None:
        for table in (self.t.apps, self.t.listed, self.t.docs, self.t.meta):
            table.pop(app_id, None)  # type: ignore[attr-defined]
        self.t.builds = {k: b for k, b in self.t.builds.items() if b.app_id != app_id}
        self.t.history = [h for h in self.t.history if h.app_id != app_id]

    def _listed(self, app: App, viewer: Viewer, flt: AppFilter) -> bool:
        facts, ns, name = self.t.listed[app.id], app.namespace, app.name
        words = " ".join(facts["search"]).lower().split()
        return (
            self._readable(ns, name, viewer, via_public=not flt.nopublic)
            and flt.namespace in (None, ns)
            and flt.name in (None, name)
            and flt.owner in (None, app.owner)
            and (not flt.public or self._public(ns, name))
            and (not flt.shared or self._shared(ns, name, app.owner, viewer))
            and flt.state in (None, app.state)
            and (flt.architecture is None or flt.architecture in facts["architectures"])
            and (flt.gpu is None or facts["gpu"] in flt.gpu)
            and (not flt.q or all(w in words for w in flt.q.lower().split()))
        )

    async def list_apps(
        self, viewer: Viewer, flt: AppFilter, after: list[str] | None, limit: int
    ) -> Page:
        def key(a: App) -> list[str]:
            return [a.namespace, a.name, a.version_key]

        found = sorted((a for a in self.t.apps.values() if self._listed(a, viewer, flt)), key=key)
        found = [a for a in found if after is None or key(a) > after]
        page = found[:limit]
        data = ",".join(self._document(a) for a in page).encode()
        return Page(data=data, more_after=key(page[-1]) if len(found) > limit else None)

    # ---- builds and history

    async def insert_build(self, app_id: int, build_number: int, requested_by: str) -> Build:
        if await self.get_build_by_number(app_id, build_number) is not None:
            raise ValueError(f"app {app_id} has a build {build_number} already")
        build = Build(uuid.uuid4(), app_id, build_number, requested_by, now())
        self.t.builds[build.build_id] = build
        return build

    async def get_build(self, build_id: uuid.UUID | None) -> Build | None:
        return self.t.builds.get(build_id) if build_id is not None else None

    async def get_build_by_number(self, app_id: int, build_number: int) -> Build | None:
        key = (app_id, build_number)
        return next((b for b in self.t.builds.values() if (b.app_id, b.build_number) == key), None)

    def _record(self, build_id: uuid.UUID, event: str, **values: Any) -> bool:
        build = self.t.builds.get(build_id)
        if build is None or getattr(build, event) is not None:
            return False
        self.t.builds[build_id] = replace(build, **values)
        return True

    async def record_started(
        self, build_id: uuid.UUID, at: datetime, event_id: str, log_location: str | None = None
    ) -> bool:
        values = {"started_at": at, "started_event": event_id, "log_location": log_location}
        return self._record(build_id, "started_event", **values)

    async def record_done(
        self, build_id: uuid.UUID, status: str, data: dict[str, Any], event_id: str
    ) -> bool:
        values = {"status": status, "done": data, "done_event": event_id, "finished_at": now()}
        return self._record(build_id, "done_event", **values)

    async def record_profile(
        self, build_id: uuid.UUID, status: str, data: dict[str, Any], event_id: str
    ) -> bool:
        values = {"profile_status": status, "profile": data, "profile_event": event_id}
        return self._record(build_id, "profile_event", **values, profiled_at=now())

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
    ) -> None:
        source = None if source is None else str(source)
        entry = HistoryEntry(
            next(self.ids), app_id, now(), source, str(target), cause, event_id, build_number, actor
        )
        self.t.history.append(entry)

    async def history(self, app_id: int) -> list[HistoryEntry]:
        return [h for h in self.t.history if h.app_id == app_id]

    # ---- images of deleted versions, ecr-meta files

    async def pushed_builds(self, app_id: int) -> list[Build]:
        builds = sorted(self.t.builds.values(), key=attrgetter("build_number"))
        return [b for b in builds if b.app_id == app_id]

    async def add_deletion(
        self,
        event_id: uuid.UUID,
        namespace: str,
        name: str,
        version: str,
        owner: str,
        requested_by: str,
    ) -> None:
        deletion = Deletion(event_id, namespace, name, version, owner, requested_by, now())
        self.t.deletions[event_id] = deletion

    async def pending_deletions(
        self, namespace: str, name: str | None = None, version: str | None = None
    ) -> int:
        return sum(
            1
            for d in self.t.deletions.values()
            if d.namespace == namespace and name in (None, d.name) and version in (None, d.version)
        )

    async def confirm_deletion(self, event_id: uuid.UUID, app_id: str) -> Deletion | None:
        found = self.t.deletions.get(event_id)
        if found is None or f"{found.namespace}/{found.name}:{found.version}" != app_id:
            return None
        return self.t.deletions.pop(event_id)

    async def replace_meta_files(
        self, app_id: int, build_id: uuid.UUID, files: list[MetaFileRow]
    ) -> None:
        self.t.meta[app_id] = [replace(f, build_id=build_id) for f in files]

    async def meta_files(self, app_id: int) -> list[MetaFileRow]:
        return list(self.t.meta.get(app_id, []))

    async def meta_file(self, app_id: int, file_name: str) -> MetaFileRow | None:
        return next((f for f in self.t.meta.get(app_id, []) if f.file_name == file_name), None)
