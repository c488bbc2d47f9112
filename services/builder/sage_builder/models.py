"""The builder's domain: what a build needs, what it yields, and how it fails.

Every failure a build can meet is a `BuildFailure` carrying one of the error classes that
`build.done` reports (`sage_common.schemas.BuildErrorClass`).
"""

from __future__ import annotations

import platform as _platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sage_common.schemas import BuildErrorClass

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "armhf": "arm",
}
_PLATFORM_RE = re.compile(r"^[a-z0-9_-]+$")


class BuildFailure(Exception):
    """A build that cannot succeed, with the class `build.done` reports and a message for people."""

    def __init__(self, error_class: BuildErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class: BuildErrorClass = error_class
        self.message = message


@dataclass(frozen=True)
class Platform:
    """An OCI platform such as linux/arm64 or linux/arm/v7."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Accept `linux/arm64`, `arm64`, `aarch64`, `linux/arm/v7`; refuse anything else."""
        parts = text.strip().lower().split("/")
        if len(parts) == 1:
            parts = ["linux", *parts]
        if len(parts) not in (2, 3) or not all(_PLATFORM_RE.match(p) for p in parts):
            raise ValueError(f"not a platform: {text!r}")
        os_, arch = parts[0], _ARCH_ALIASES.get(parts[1], parts[1])
        variant = parts[2] if len(parts) == 3 else None
        if arch == "arm64" and variant == "v8":
            variant = None
        return cls(os_, arch, variant)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @property
    def tag(self) -> str:
        """A name part that can go in an image tag."""
        return "-".join(p for p in (self.os, self.architecture, self.variant) if p)


def native_architecture() -> str:
    """This machine's architecture in OCI spelling (amd64, arm64, ...)."""
    machine = _platform.machine().lower()
    return _ARCH_ALIASES.get(machine, machine)


@dataclass(frozen=True)
class BuildRequest:
    """One build as the builder runs it: parsed from `app.submitted`."""

    build_id: str
    app_id: str  # namespace/name:version
    url: str
    branch: str | None
    tag: str | None
    commit: str | None
    directory: str
    dockerfile: str
    platforms: tuple[Platform, ...]
    build_args: dict[str, str] = field(default_factory=dict)
    submitter: str = ""
    # Not used to build: handed on in `build.done`, where the profiler reads them.
    testing: dict[str, Any] | None = None
    hardware: dict[str, Any] | None = None

    @property
    def repository(self) -> str:
        """`namespace/name`, the registry repository the image goes to."""
        return self.app_id.rpartition(":")[0] or self.app_id

    @property
    def namespace(self) -> str:
        """The ECR namespace: the tenant whose layer cache the build uses."""
        return self.app_id.partition("/")[0]

    @property
    def version(self) -> str:
        return self.app_id.rpartition(":")[2]


@dataclass(frozen=True)
class Checkout:
    """A fetched source tree: where it is, the exact commit, the context and Dockerfile in it."""

    root: Path
    commit: str
    context: Path
    dockerfile: Path
    dockerfile_digest: str


@dataclass(frozen=True)
class ArchResult:
    """One architecture's image as the backend built it, before the push."""

    platform: Platform
    local_ref: str
    emulated: bool
    base_images: dict[str, str] = field(default_factory=dict)  # base name -> digest


@dataclass(frozen=True)
class PushResult:
    """The image index in the registry and each architecture's manifest digest in it."""

    reference: str  # registry/namespace/name:version
    index_digest: str
    digests: dict[str, str]  # platform string -> manifest digest
