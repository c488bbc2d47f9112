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
    # The app's `testing` and `hardware` as the ECR stored them: `sage_common.appspec.Testing` and
    # `Hardware`, validated there, with any fields it set aside as written; read with `.read()`.
    testing: dict[str, Any] | None = None
    hardware: dict[str, Any] | None = None


class BuildStarted(EventData):
    routing_key = "build.started"
    app_id: str
    build_id: str
    started_at: datetime
    log_location: str | None = None  # where the live build log is written (s3://bucket/key)


BuildErrorClass = Literal[
    "source_unreachable",
    "dockerfile_missing",
    "build_failed",
    "push_failed",
    "timeout",
    "cancelled",
]


class ArchImage(_Part):
    architecture: str
    digest: str
    emulated: bool = False


class MetaFile(_Part):
    """One file of the app's `ecr-meta/` folder, checked and stored by the builder beside its log."""

    name: str  # ecr-icon.jpg, ecr-science-image.png, ecr-science-description.md, ...
    kind: str  # "thumbnail", "image" or "science_description"
    content_type: str  # from the content, not the name: image/png, text/markdown; charset=utf-8
    size: int
    sha256: str  # hex digest of the stored bytes
    location: str  # s3://bucket/builds/namespace/name/version/build_id/ecr-meta/<name>


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
    # The app's `testing` and `hardware` as `app.submitted` carried them, passed on for the profiler
    # (`sage_common.appspec.Testing.read`, `Hardware.read`).
    testing: dict[str, Any] | None = None
    hardware: dict[str, Any] | None = None
    # The app's ecr-meta files that passed the builder's checks (none when it has no such folder).
    meta_files: list[MetaFile] = Field(default_factory=list)


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
    # Added by the profiler (all optional):
    startup_seconds: float = 0.0  # from the create request to the process starting
    nr_throttled: int = 0  # CFS periods in which the CPU ceiling held the app back
    passed: bool | None = None
    failure: str | None = None  # why it did not pass, in words
    # Where the memory and CPU figures came from: "cgroup" (Docker), "metrics-api" (Kubernetes),
    # "none" (no sample came: the figures are zeros, not measurements).
    measured_by: str | None = None
    log_tail: list[str] = Field(default_factory=list)


class ProfileSeries(_Part):
    """Memory and CPU of one run over time, as columns of equal length (for charts)."""

    architecture: str
    repetition: int
    interval_seconds: float
    t: list[float]  # seconds since the run started
    memory_bytes: list[int]
    cpu_cores: list[float]
    gpu_memory_bytes: list[int | None] | None = None
    gpu_utilization: list[float | None] | None = None


class Recommended(_Part):
    """Limits and requests from passing native runs (`ProfileDone.recommended`)."""

    memory_limit_bytes: int | None = None  # peak with headroom
    memory_request_bytes: int | None = None  # peak
    cpu_limit: float | None = None  # cores: the busiest second, with headroom
    cpu_request: float | None = None  # cores: the average over a run
    gpu_memory_bytes: int | None = None
    basis: str = ""


class NodeFit(_Part):
    """How many copies fit on one node profile (`ProfileDone.node_fit[name]`)."""

    architecture: str
    copies: int | None  # None when no limits could be derived
    limited_by: Literal["memory", "cpu", "architecture", "gpu", "unknown"]
    copies_by_memory: int | None = None
    copies_by_cpu: int | None = None


class Concurrency(_Part):
    """The declared copies run side by side (`ProfileDone.concurrency`)."""

    tested: bool
    copies: int
    reason: str | None = None  # why it was not tested
    architecture: str | None = None
    emulated: bool = False
    passed: int | None = None
    all_passed: bool | None = None
    failures: dict[str, str] = Field(default_factory=dict)  # copy index -> why it failed
    wall_seconds: list[float] = Field(default_factory=list)
    solo_wall_seconds: float | None = None
    slowdown: float | None = None  # mean wall side by side / mean wall alone
    peak_memory_bytes: list[int] = Field(default_factory=list)
    ceiling: dict[str, float] = Field(default_factory=dict)  # memory_bytes, cpus shared by all


class Period(_Part):
    """How often the app can run (`ProfileDone.period`)."""

    shortest_seconds: float | None = None  # (slowest wall + start-up) * (1 + margin)
    shortest_minutes: int | None = None  # the same, whole minutes, at least 1
    wall_seconds: float | None = None
    startup_seconds: float | None = None
    declared_seconds: float | None = None
    met: bool | None = None  # None when nothing was declared or nothing could be timed
    emulated: bool = False
    reason: str | None = None


class Ceilings(_Part):
    """The ceilings every run of the profile had, and why (`ProfileDone.ceilings`)."""

    memory_bytes: int
    cpus: float
    # default: the profiler's own; hardware.min_memory: raised to what the app declares it
    # needs; maximum: the app declares more than the profiler's maximum, so raised to that.
    memory_from: Literal["default", "hardware.min_memory", "maximum"] = "default"
    min_memory_bytes: int | None = None  # the app's `hardware.min_memory`, as declared
    default_memory_bytes: int | None = None
    max_memory_bytes: int | None = None


class ArchitectureOutcome(_Part):
    """What the profiler did with one architecture of the image (`ProfileDone.architectures`)."""

    architecture: str
    ran: bool
    emulated: bool = False
    reason: str | None = None  # why it did not run, or failed


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
    # Added by the profiler (all optional); the dicts follow Concurrency, Period, Recommended,
    # NodeFit and Ceilings.
    architectures: list[ArchitectureOutcome] = Field(default_factory=list)
    series: list[ProfileSeries] = Field(default_factory=list)
    started_at: datetime | None = None
    duration_seconds: float = 0.0
    ceilings: dict[str, Any] = Field(default_factory=dict)


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


class DeletedBuild(_Part):
    """One build of a deleted version, with what it pushed (`AppDeleted.builds`)."""

    build_id: str
    image: str | None = None  # registry/namespace/name:version, when it pushed
    index_digest: str | None = None
    images: list[ArchImage] = Field(default_factory=list)


class AppDeleted(EventData):
    """A version left the catalogue: the builder deletes its images from the registry."""

    routing_key = "app.deleted"
    app_id: str
    repository: str  # namespace/name, the image's path in the registry
    requested_by: str
    builds: list[DeletedBuild] = Field(default_factory=list)  # every build of the version


class AppImagesDeleted(EventData):
    """The images of a deleted version are gone from the registry (answers `app.deleted`)."""

    routing_key = "app.images_deleted"
    app_id: str
    deletion_id: str  # the id of the `app.deleted` event this answers
    deleted: list[str] = Field(default_factory=list)  # manifest digests deleted now
    absent: list[str] = Field(default_factory=list)  # digests the registry no longer held
    kept: list[str] = Field(default_factory=list)  # digests another live version also uses
