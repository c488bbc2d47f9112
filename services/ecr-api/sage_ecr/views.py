"""The JSON the API answers with, in SAGE's wire names; built here once, not in every handler.

An app's document is computed whenever the version changes and stored beside it (`apps.doc`), so a
listing is the stored documents joined, with only `public` computed per request.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .states import State

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


def iso(moment: datetime | None) -> str | None:
    """SAGE's time format: `2020-05-06T18:41:19Z`."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def app_doc(app: dict[str, Any], build: dict[str, Any] | None) -> dict[str, Any]:
    """The app as every route shows it (without `public`, which depends on the ACL)."""
    spec = app["spec"]
    doc: dict[str, Any] = {
        "id": app_id(app["namespace"], app["name"], app["version"]),
        "namespace": app["namespace"],
        "name": app["name"],
        "version": app["version"],
    }
    for key in SPEC_ORDER:
        doc[key] = spec.get(key)
    doc.update(
        owner=app["owner"],
        frozen=app["frozen"],
        state=app["state"],
        build_number=app["build_number"],
        image=image_of(build.get("done") if build else None),
        profile=profile_summary(build.get("profile") if build else None),
        review=(
            {
                "reviewer": app["reviewer"],
                "comment": app["review_comment"],
                "time": iso(app["reviewed_at"]),
            }
            if app.get("reviewer")
            else None
        ),
        time_created=iso(app["created_at"]),
        time_last_updated=iso(app["updated_at"]),
    )
    for key, value in spec.items():  # fields the description had beyond the known ones
        doc.setdefault(key, value)
    return doc


def log_location(build: dict[str, Any] | None) -> str | None:
    """Where the build's log is: as `build.done` reported it, else as `build.started` did."""
    done = (build or {}).get("done") or {}
    return done.get("log_location") or (build or {}).get("log_location")


def build_view(app: dict[str, Any], build: dict[str, Any] | None) -> dict[str, Any]:
    """`GET /api/builds/...`: SAGE's `result` (SUCCESS, FAILURE, null while running) and more."""
    ident = app_id(app["namespace"], app["name"], app["version"])
    if build is None:
        return {"id": ident, "build_number": 0, "result": None, "building": False}
    done = build.get("done") or {}
    status = build.get("status")
    result = {"success": "SUCCESS", "failure": "FAILURE"}.get(status or "")
    return {
        "id": ident,
        "build_number": build["build_number"],
        "build_id": str(build["build_id"]),
        "result": result,
        "building": result is None and app["state"] in (State.SUBMITTED, State.BUILDING),
        "state": app["state"],
        "requested_by": build["requested_by"],
        "timestamp": int(build["requested_at"].timestamp() * 1000),
        "requested_at": iso(build["requested_at"]),
        "started_at": iso(build.get("started_at")),
        "finished_at": iso(build.get("finished_at")),
        "duration_seconds": done.get("duration_seconds"),
        "commit": done.get("commit"),
        "image": done.get("image"),
        "index_digest": done.get("index_digest"),
        "images": done.get("images", []),
        "log_location": log_location(build),
        "error_class": done.get("error_class"),
        "error": done.get("error"),
    }


def outcome_view(build: dict[str, Any] | None) -> dict[str, Any]:
    """Why the current build stands where it does: its error and the profile's verdict, in short.

    So that `status` answers "why did it fail" without a second request (`/logs`, `/profile`).
    """
    done = (build or {}).get("done") or {}
    profile = (build or {}).get("profile") or {}
    return {
        "build": {
            "build_id": str(build["build_id"]),
            "status": build.get("status"),
            "error_class": done.get("error_class"),
            "error": done.get("error"),
        }
        if build
        else None,
        "profile": {"status": profile.get("status"), "reason": profile.get("reason")}
        if profile
        else None,
    }


def history_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "time": iso(row["at"]),
        "from": row["from_state"],
        "to": row["to_state"],
        "cause": row["cause"],
        "event_id": str(row["event_id"]) if row["event_id"] else None,
        "build_number": row["build_number"],
        "actor": row["actor"],
    }


def namespace_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["name"], "owner_id": row["owner"], "type": "namespace"}


def repository_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "repository",
        "namespace": row["namespace"],
        "name": row["name"],
        "owner_id": row["owner"],
        "public": bool(row.get("public", False)),
    }


def permission_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "grantee": row["grantee"],
        "granteeType": row["grantee_type"],
        "permission": row["permission"],
        "resourceName": row["resource_name"],
        "resourceType": row["resource_type"],
    }
