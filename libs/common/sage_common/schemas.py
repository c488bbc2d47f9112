"""The data of every event on the bus: the contract between ecr-api, builder, profiler and scheduler.

Each model names its routing key; a breaking change gets a new model with `version = 2`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .events import EventData


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class AppSource(_Part):
    url: str
    branch: str | None = None
    tag: str | None = None
    commit: str | None = None
    directory: str = "."
    dockerfile: str = "Dockerfile"
    architectures: list[str] = Field(default_factory=lambda: ["linux/amd64"])
    build_args: dict[str, str] = Field(default_factory=dict)


class AppSubmitted(EventData):
    routing_key = "app.submitted"
    app_id: str  # namespace/name:version
    build_id: str
    source: AppSource
    submitter: str
    testing: dict[str, Any] | None = None


class BuildStarted(EventData):
    routing_key = "build.started"
    app_id: str
    build_id: str
    started_at: datetime


BuildErrorClass = Literal[
    "source_unreachable", "dockerfile_missing", "build_failed", "push_failed", "timeout", "cancelled"
]


class ArchImage(_Part):
    architecture: str
    digest: str
    emulated: bool = False


class BuildDone(EventData):
    routing_key = "build.done"
    app_id: str
    build_id: str
    status: Literal["success", "failure"]
    commit: str | None = None
    image: str | None = None  # registry/namespace/name:version
    index_digest: str | None = None
    images: list[ArchImage] = Field(default_factory=list)
    duration_seconds: float = 0.0
    log_location: str | None = None
    error_class: BuildErrorClass | None = None
    error: str | None = None
    log_tail: list[str] = Field(default_factory=list)
    provenance: dict[str, Any] = Field(default_factory=dict)
    testing: dict[str, Any] | None = None


class TestRun(_Part):
    architecture: str
    repetition: int
    exit_code: int | None
    oom_killed: bool
    timed_out: bool
    wall_seconds: float
    peak_memory_bytes: int
    cpu_seconds: float
    cpu_user_seconds: float = 0.0
    cpu_system_seconds: float = 0.0
    cpu_cores: float = 0.0
    throttled_seconds: float = 0.0
    gpu_memory_bytes: int | None = None
    gpu_utilization: float | None = None
    emulated: bool = False


class ProfileDone(EventData):
    routing_key = "profile.done"
    app_id: str
    build_id: str
    profile_id: str
    status: Literal["passed", "failed"]
    reason: str | None = None
    runs: list[TestRun] = Field(default_factory=list)
    concurrency: dict[str, Any] = Field(default_factory=dict)
    period: dict[str, Any] = Field(default_factory=dict)
    recommended: dict[str, Any] = Field(default_factory=dict)
    node_fit: dict[str, Any] = Field(default_factory=dict)


class ReviewRequested(EventData):
    routing_key = "review.requested"
    app_id: str
    build: dict[str, Any] = Field(default_factory=dict)
    profile: dict[str, Any] = Field(default_factory=dict)


class AppPublished(EventData):
    routing_key = "app.published"
    app_id: str
    reviewer: str
    comment: str = ""
    image: str | None = None
    index_digest: str | None = None
    images: list[ArchImage] = Field(default_factory=list)


class AppRejected(EventData):
    routing_key = "app.rejected"
    app_id: str
    reviewer: str
    comment: str = ""


class BuildCancelled(EventData):
    routing_key = "build.cancel"
    app_id: str
    build_id: str
    requested_by: str
