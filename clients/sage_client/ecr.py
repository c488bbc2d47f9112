"""The Edge Code Repository's API (`/api`): submit apps, follow them through the pipeline, review.

The routes are the SAGE ECR's where they exist; those the pipeline added (status, logs, profile,
review) are in `ROUTES`, one place to adjust if the server names them differently.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .buildlog import LogChunk, follow_log, read_log_chunk
from .errors import SageError
from .http import Transport, quote_segment
from .retry import RetryPolicy, with_retries

ROUTES = {
    "submit": "/api/submit",
    "apps": "/api/apps",
    "app": "/api/apps/{ns}/{name}/{version}",
    "status": "/api/apps/{ns}/{name}/{version}/status",
    "logs": "/api/apps/{ns}/{name}/{version}/logs",
    "profile": "/api/apps/{ns}/{name}/{version}/profile",
    "review": "/api/apps/{ns}/{name}/{version}/review",
    "builds": "/api/builds/{ns}/{name}/{version}",
    "namespaces": "/api/namespaces",
    "permissions": "/api/permissions/{resource}",
}
FINAL_STATES = frozenset({"published", "rejected", "build_failed", "profile_failed", "in_review"})
FAILED_STATES = frozenset({"rejected", "build_failed", "profile_failed"})
_APP_ID = re.compile(r"^([^/\s:]+)/([^/\s:]+):([^/\s:]+)$")
_RESOURCE = re.compile(r"^[^/\s:]+(/[^/\s:]+)?$")
POLL_RETRY = RetryPolicy(attempts=6, base_delay=1.0, max_delay=15.0)


@dataclass(frozen=True)
class AppId:
    """`namespace/name:version`, the id the ECR and the scheduler use."""

    namespace: str
    name: str
    version: str

    @classmethod
    def parse(cls, text: str) -> AppId:
        match = _APP_ID.match(text.strip())
        if not match:
            raise SageError(0, f"not an app id (namespace/name:version): {text!r}")
        return cls(*match.groups())

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.version}"

    def path(self, route: str) -> str:
        return ROUTES[route].format(
            ns=quote_segment(self.namespace),
            name=quote_segment(self.name),
            version=quote_segment(self.version),
        )


def _of_build(entry: dict[str, Any], build_number: int) -> bool:
    """Whether a history entry belongs to `build_number` or a later build (unnumbered: yes)."""
    number = entry.get("build_number")
    return number is None or int(number) >= build_number


def resource_path(resource: str) -> str:
    """`namespace` or `namespace/repository`, checked, for the permissions routes."""
    if not _RESOURCE.match(resource):
        raise SageError(0, f"not a namespace or namespace/repository: {resource!r}")
    return ROUTES["permissions"].format(resource="/".join(map(quote_segment, resource.split("/"))))


class EcrAPI:
    """Apps, their pipeline status, review, namespaces and permissions."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def submit(
        self,
        spec: str | bytes,
        *,
        content_type: str = "application/yaml",
        force: bool = False,
        **fields: str | None,
    ) -> dict[str, Any]:
        """`POST /api/submit` with the app description; answers the stored app (with
        `warnings` when the server changed or kept something the author should know about).

        `fields` (namespace, name, version, url, branch, tag) go as query fields and fill in
        what the description leaves out; `force` replaces a version that is not frozen."""
        body = spec.encode() if isinstance(spec, str) else spec
        params = {k: v for k, v in fields.items() if v}
        if force:
            params["force"] = "true"
        result: dict[str, Any] = await self._t.request(
            "POST",
            ROUTES["submit"],
            params=params or None,
            data=body,
            headers={"Content-Type": content_type},
        )
        return result

    async def submit_file(self, path: Path) -> dict[str, Any]:
        """Submit a `sage.yaml` (or `.json`) file as it is."""
        kind = "application/json" if path.suffix.lower() == ".json" else "application/yaml"
        return await self.submit(await asyncio.to_thread(path.read_bytes), content_type=kind)

    async def list_apps(
        self,
        namespace: str | None = None,
        name: str | None = None,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
        **filters: str | bool | None,
    ) -> dict[str, Any]:
        """One page: `{"pagination": {"continuationToken"}, "data": [apps]}`."""
        path = ROUTES["apps"]
        for part in (namespace, name if namespace else None):
            if part:
                path += "/" + quote_segment(part)
        params: dict[str, str | int] = {}
        if limit:
            params["limit"] = limit
        if continue_token:
            params["continue"] = continue_token
        for key, value in filters.items():
            if value is True:
                params[key] = "true"
            elif value:
                params[key] = str(value)
        result: dict[str, Any] = await self._t.request("GET", path, params=params)
        return result

    async def iter_apps(
        self, namespace: str | None = None, name: str | None = None, **kw: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Every app across pages, following the continuation token."""
        token = kw.pop("continue_token", None)
        while True:
            page = await self.list_apps(namespace, name, continue_token=token, **kw)
            for app in page.get("data") or []:
                yield app
            next_token = (page.get("pagination") or {}).get("continuationToken")
            if not next_token:
                return
            if next_token == token:
                raise SageError(0, "the app listing's continuation token does not advance")
            token = next_token

    async def show(self, app: AppId) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.request("GET", app.path("app"))
        return result

    async def status(self, app: AppId) -> dict[str, Any]:
        """`{"state", "history": [{"time", "from", "to", "cause", ...}]}` of one version."""
        result: dict[str, Any] = await self._t.request("GET", app.path("status"))
        return result

    async def delete(self, app: AppId) -> Any:
        return await self._t.request("DELETE", app.path("app"))

    async def rebuild(self, app: AppId) -> dict[str, Any]:
        """`POST /api/builds/...`: build the version again; answers `{"build_number": N}`."""
        result: dict[str, Any] = await self._t.request("POST", app.path("builds"))
        return result

    async def profile(self, app: AppId) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.request("GET", app.path("profile"))
        return result

    async def logs(self, app: AppId) -> dict[str, Any]:
        """The current build's log: `finished`, `log_tail` (lines), `log_location`, `error`."""
        result: dict[str, Any] = await self._t.request("GET", app.path("logs"))
        return result

    async def log_text(self, app: AppId, offset: int = 0) -> LogChunk:
        """The build log's bytes after the first `offset`, its size, and whether it is complete."""
        return await read_log_chunk(self._t, app.path("logs"), offset)

    def iter_log_text(
        self,
        app: AppId,
        *,
        follow: bool = False,
        interval: float = 2.0,
        on_restart: Callable[[str], None] | None = None,
    ) -> AsyncIterator[LogChunk]:
        """The whole log in chunks, each byte once; with `follow`, until the build has finished."""
        return follow_log(
            lambda offset: self.log_text(app, offset),
            follow=follow,
            interval=interval,
            retry=POLL_RETRY,
            on_restart=on_restart,
        )

    async def follow_logs(
        self, app: AppId, *, interval: float = 2.0
    ) -> AsyncIterator[str | dict[str, Any]]:
        """Each new line of the JSON answer's tail until the build has finished, then the answer."""
        printed = 0
        while True:
            answer = await with_retries(lambda: self.logs(app), POLL_RETRY)
            lines = [str(line) for line in answer.get("log_tail") or []]
            if len(lines) < printed:  # a new build started: its log from the top
                printed = 0
            for line in lines[printed:]:
                yield line
            printed = len(lines)
            if answer.get("finished"):
                yield answer
                return
            await asyncio.sleep(interval)

    async def review(self, app: AppId, decision: str, comment: str = "") -> dict[str, Any]:
        """Approve (publish) or reject a version in review, with a comment."""
        if decision not in ("approve", "reject"):
            raise SageError(0, f"a review decision is approve or reject, not {decision!r}")
        result: dict[str, Any] = await self._t.request(
            "POST", app.path("review"), json={"decision": decision, "comment": comment}
        )
        return result

    @staticmethod
    def entry_state(entry: dict[str, Any]) -> str:
        """The state a history entry moved to (`to`, or `state` in older answers)."""
        return str(entry.get("to") or entry.get("state") or "?")

    async def wait(
        self,
        app: AppId,
        *,
        interval: float = 2.0,
        on_state: Callable[[dict[str, Any]], None] | None = None,
        build_number: int | None = None,
    ) -> dict[str, Any]:
        """Poll the status until a final state; `on_state` hears each new history entry once.

        With `build_number` (after a rebuild) only that build and later ones count: earlier
        builds' entries are not reported, and their final state does not end the wait."""
        seen = 0
        last_state = None
        while True:
            status = await with_retries(lambda: self.status(app), POLL_RETRY)
            history = status.get("history") or []
            if build_number is not None:
                if int(status.get("build_number") or build_number) < build_number:
                    await asyncio.sleep(interval)  # an answer from before the rebuild
                    continue
                history = [e for e in history if _of_build(e, build_number)]
            if not history and status.get("state") != last_state:
                history = [{"to": status.get("state")}]  # a server without history
                seen = 0
            for entry in history[seen:]:
                if on_state is not None:
                    on_state(entry)
            seen = len(history)
            last_state = status.get("state")
            if last_state in FINAL_STATES:
                return status
            await asyncio.sleep(interval)

    async def namespaces(self) -> list[dict[str, Any]]:
        answer = await self._t.request("GET", ROUTES["namespaces"])
        return list(answer.get("data") or []) if isinstance(answer, dict) else list(answer or [])

    async def create_namespace(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.request(
            "PUT", ROUTES["namespaces"], json={"id": name}
        )
        return result

    async def permissions(self, resource: str) -> list[dict[str, Any]]:
        """Grants on `namespace` or `namespace/repository`."""
        result: list[dict[str, Any]] | None = await self._t.request("GET", resource_path(resource))
        return result or []

    async def change_permission(
        self, resource: str, operation: str, grantee_type: str, grantee: str, permission: str
    ) -> Any:
        """`PUT` `{"operation": "add"|"delete", "granteeType", "grantee", "permission"}`."""
        body = {
            "operation": operation,
            "granteeType": grantee_type,
            "grantee": grantee,
            "permission": permission,
        }
        return await self._t.request("PUT", resource_path(resource), json=body)
