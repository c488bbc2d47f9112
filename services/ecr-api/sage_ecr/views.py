"""The JSON the API answers with, in SAGE's wire names; built here once, not in every handler.

An app's document is computed whenever the version changes and stored beside it (`apps.doc`), so a
listing is the stored documents joined, with only `public` computed per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sage_common.redact import redact_url

from .acl import Grant
from .states import State

if TYPE_CHECKING:
    from .records import App, Build, HistoryEntry, MetaFileRow, Namespace, Repository

# Bump whenever `app_doc` changes: stored documents made by an older version are recomputed when
# the service starts (service_builds.refresh_stale_docs), so every client sees one shape.
DOC_VERSION = 4

SPEC_ORDER = (
    "description",
    "keywords",
    "authors",
    "collaborators",
    "homepage",
    "funding",
    "license",
    "source",
    "inputs",
    "resources",
    "metadata",
    "hardware",
    "provenance",
    "testing",
)


# SAGE's app fields that are plain text there: "" when absent, never null (SAGE's clients test
# them for truth and call string methods on them).
SAGE_TEXT = ("description", "homepage", "funding", "license")
# SAGE's comma-separated text fields, and the names of the lists that stand beside them.
SAGE_LISTS = {
    "keywords": "keyword_list",
    "authors": "author_list",
    "collaborators": "collaborator_list",
}
# SAGE's app fields that this catalogue has no use for, shown as SAGE shows them when unset.
SAGE_UNUSED = ("depends_on", "baseCommand", "arguments")


def iso(moment: datetime | None) -> str | None:
    """SAGE's time format: `2020-05-06T18:41:19Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def app_id(namespace: str, name: str, version: str) -> str:
    return f"{namespace}/{name}:{version}"


def pinned(reference: str, digest: str) -> str:
    """`registry:5000/ns/name:1.0.0` + digest -> `registry:5000/ns/name@sha256:...`."""
    head, sep, tail = reference.rpartition(":")
    repository = head if sep and "/" not in tail else reference
    return f"{repository}@{digest}"


def image_of(done: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a scheduler pulls: the reference, the index digest and each architecture's digest."""
    if not done or done.get("status") != "success" or not done.get("image"):
        return None
    index = done.get("index_digest")
    return {
        "reference": done["image"],
        "index_digest": index,
        "pinned": pinned(done["image"], index) if index else None,
        "digests": {i["architecture"]: i["digest"] for i in done.get("images", [])},
    }


def profile_summary(profile: dict[str, Any] | None) -> dict[str, Any] | None:
    if not profile:
        return None
    return {
        "status": profile.get("status"),
        "recommended": profile.get("recommended", {}),
        "period": profile.get("period", {}),
        "concurrency": profile.get("concurrency", {}),
    }


def text_items(value: Any) -> list[str]:
    """A SAGE text list as items: a list as it is, text split at its commas, nothing for null."""
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return [str(item) for item in value]


def source_view(source: dict[str, Any], build: Build | None) -> dict[str, Any]:
    """`source` as SAGE shows it: `branch`/`tag` "" when unset, `git_commit` the commit the
    current build checked out (else the pinned `commit`, else ""); credentials in `url` (stored
    before they were refused) shown as `***`."""
    done = (build.done if build else None) or {}
    shown = dict(source)
    if isinstance(shown.get("url"), str):
        shown["url"] = redact_url(shown["url"])
    for key in ("branch", "tag"):
        if shown.get(key) is None:
            shown[key] = ""
    shown["git_commit"] = done.get("commit") or source.get("commit") or ""
    return shown


def app_doc(app: App, build: Build | None) -> dict[str, Any]:
    """The app as every route shows it (without `public`, which depends on the ACL)."""
    spec = app.spec
    doc: dict[str, Any] = {
        "id": app.ident,
        "namespace": app.namespace,
        "name": app.name,
        "version": app.version,
    }
    for key in SPEC_ORDER:
        value = spec.get(key)
        if key in SAGE_LISTS:
            items = text_items(value)
            doc[key] = ", ".join(items)
            doc[SAGE_LISTS[key]] = items
        elif key in SAGE_TEXT:
            doc[key] = "" if value is None else value
        elif key == "source":
            doc[key] = source_view(spec[key], build)
        else:
            doc[key] = value
    for key in SAGE_UNUSED:
        doc[key] = "" if spec.get(key) is None else spec[key]
    doc.update(
        owner=app.owner,
        frozen=app.frozen,
        state=app.state,
        build_number=app.build_number,
        image=image_of(build.done if build else None),
        profile=profile_summary(build.profile if build else None),
        review=(
            {"reviewer": app.reviewer, "comment": app.review_comment, "time": iso(app.reviewed_at)}
            if app.reviewer
            else None
        ),
        time_created=iso(app.created_at),
        time_last_updated=iso(app.updated_at),
    )
    for key, value in spec.items():  # fields the description had beyond the known ones
        doc.setdefault(key, value)
    return doc


def log_location(build: Build | None) -> str | None:
    """Where the build's log is: as `build.done` reported it, else as `build.started` did."""
    if build is None:
        return None
    return (build.done or {}).get("log_location") or build.log_location


def build_view(app: App, build: Build | None) -> dict[str, Any]:
    """`GET /api/builds/...`: SAGE's `result` (SUCCESS, FAILURE, null while running) and more."""
    if build is None:
        return {"id": app.ident, "build_number": 0, "result": None, "building": False}
    done = build.done or {}
    result = {"success": "SUCCESS", "failure": "FAILURE"}.get(build.status or "")
    return {
        "id": app.ident,
        "build_number": build.build_number,
        "build_id": str(build.build_id),
        "result": result,
        "building": result is None and app.state in (State.SUBMITTED, State.BUILDING),
        "state": app.state,
        "requested_by": build.requested_by,
        "timestamp": int(build.requested_at.timestamp() * 1000),
        "requested_at": iso(build.requested_at),
        "started_at": iso(build.started_at),
        "finished_at": iso(build.finished_at),
        "duration_seconds": done.get("duration_seconds"),
        "commit": done.get("commit"),
        "image": done.get("image"),
        "index_digest": done.get("index_digest"),
        "images": done.get("images", []),
        "log_location": log_location(build),
        "error_class": done.get("error_class"),
        "error": done.get("error"),
    }


def build_url(base_url: str, app: App, build_number: int) -> str:
    """A build's address, ending in `/` as Jenkins' did: SAGE's portal links `url + "console"`,
    which serves the build's log as text."""
    parts = (app.namespace, app.name, app.version, str(build_number))
    return f"{base_url}/api/builds/" + "/".join(quote(p, safe="") for p in parts) + "/"


def outcome_view(build: Build | None) -> dict[str, Any]:
    """The current build's error and the profile's verdict, in short: `status` answers "why did
    it fail" without a second request (`/logs`, `/profile`)."""
    if build is None:
        return {"build": None, "profile": None}
    done, profile = build.done or {}, build.profile or {}
    return {
        "build": {
            "build_id": str(build.build_id),
            "status": build.status,
            "error_class": done.get("error_class"),
            "error": done.get("error"),
        },
        "profile": {"status": profile.get("status"), "reason": profile.get("reason")}
        if profile
        else None,
    }


def history_view(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "time": iso(entry.at),
        "from": entry.from_state,
        "to": entry.to_state,
        "cause": entry.cause,
        "event_id": str(entry.event_id) if entry.event_id else None,
        "build_number": entry.build_number,
        "actor": entry.actor,
    }


def namespace_view(namespace: Namespace) -> dict[str, Any]:
    return {"id": namespace.name, "owner_id": namespace.owner, "type": "namespace"}


def repository_view(repo: Repository) -> dict[str, Any]:
    return {
        "type": "repository",
        "namespace": repo.namespace,
        "name": repo.name,
        "owner_id": repo.owner,
        "public": repo.public,
    }


def meta_fields(app: App, files: Sequence[MetaFileRow]) -> dict[str, Any]:
    """SAGE's `thumbnail`, `images` and `science_description`: paths under `/api/meta-files/`
    (`ns/name/version/file`), null when absent, as the portal reads them."""
    prefix = f"{app.namespace}/{app.name}/{app.version}/"

    def paths(kind: str) -> list[str]:
        return [prefix + f.file_name for f in files if f.kind == kind]

    return {
        "thumbnail": next(iter(paths("thumbnail")), None),
        "images": paths("image") or None,
        "science_description": next(iter(paths("science_description")), None),
    }


def grant_view(grant: Grant, resource_type: str, resource_name: str) -> dict[str, Any]:
    """One grant as SAGE's permission listings show it."""
    return {
        "grantee": grant.grantee,
        "granteeType": grant.grantee_type,
        "permission": grant.permission.value,
        "resourceName": resource_name,
        "resourceType": resource_type,
    }
