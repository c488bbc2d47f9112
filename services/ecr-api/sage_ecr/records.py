"""The ECR's rows as the use cases receive them from the store: typed and immutable.

A column's name is the field's name, so the store builds a record straight from its row. The
JSON columns (`spec`, a build's `done` and `profile`) stay the documents they are.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    owner: str
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Repository:
    namespace: str
    name: str
    owner: str
    public: bool = False  # AllUsers may read it
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class App:
    """One app version, without its stored document."""

    id: int
    namespace: str
    name: str
    version: str
    version_key: str
    owner: str
    spec: dict[str, Any]  # the description as stored
    state: str
    created_at: datetime
    updated_at: datetime
    frozen: bool = False
    build_number: int = 0
    build_id: uuid.UUID | None = None  # the current build
    reviewer: str | None = None
    review_comment: str | None = None
    reviewed_at: datetime | None = None

    @property
    def ident(self) -> str:
        """`namespace/name:version`, as every event and message names the version."""
        return f"{self.namespace}/{self.name}:{self.version}"


@dataclass(frozen=True, slots=True)
class Build:
    """One build of a version, with what `build.started`, `build.done` and `profile.done` said."""

    build_id: uuid.UUID
    app_id: int
    build_number: int
    requested_by: str
    requested_at: datetime
    started_at: datetime | None = None
    started_event: str | None = None
    finished_at: datetime | None = None
    status: Literal["success", "failure"] | None = None
    done: dict[str, Any] | None = None  # the build.done data
    done_event: str | None = None
    profile_status: Literal["passed", "failed"] | None = None
    profile: dict[str, Any] | None = None  # the profile.done data
    profile_event: str | None = None
    profiled_at: datetime | None = None
    log_location: str | None = None  # as build.started reported it


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One state transition of a version."""

    id: int
    app_id: int
    at: datetime
    from_state: str | None
    to_state: str
    cause: str
    event_id: str | None
    build_number: int | None
    actor: str | None


@dataclass(frozen=True, slots=True)
class Deletion:
    """A deleted version whose images the builder has not yet confirmed gone."""

    event_id: uuid.UUID
    namespace: str
    name: str
    version: str
    owner: str
    requested_by: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class MetaFileRow:
    """One recorded ecr-meta file of a version, in the order the builder listed it."""

    file_name: str
    kind: str
    content_type: str
    size: int
    sha256: str
    location: str
    build_id: uuid.UUID
