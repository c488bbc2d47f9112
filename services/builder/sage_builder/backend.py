"""The build backend interface: build one platform's image, push the index of them.

buildah is the backend this service runs (docs/adr/0006-build-backend.md says why); the interface
keeps the pipeline free of any one tool, and `FakeBackend` beside it serves unit tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from .models import ArchResult, BuildFailure, BuildRequest, Checkout, Platform, native_architecture
from .procs import LineSink


class BuildBackend(Protocol):
    """Builds images in a per-repository store and pushes them as one multi-platform index."""

    async def pull(
        self,
        images: Sequence[str],
        platform: Platform,
        store: Path,
        log: LineSink,
        authfile: Path | None,
    ) -> list[tuple[str, str]]:
        """Pull `images` for `platform` into `store`, with the submitter's rights in `authfile` or
        anonymously, or raise `BuildFailure`; the ONBUILD triggers they carry, as (image, step)."""
        ...

    async def build(
        self,
        request: BuildRequest,
        checkout: Checkout,
        platform: Platform,
        store: Path,
        log: LineSink,
    ) -> ArchResult:
        """Build `platform`'s image, sandboxed, from pulled images only; `build_failed` if not."""
        ...

    async def push(
        self,
        request: BuildRequest,
        images: list[ArchResult],
        destination: str,
        store: Path,
        log: LineSink,
        authfile: Path | None,
    ) -> str:
        """Push every image and an index of them to `destination`; the index digest (or
        `push_failed` when the registry cannot take them)."""
        ...

    async def release(self, request: BuildRequest, images: list[ArchResult], store: Path) -> None:
        """The build's images stay in the store as the repository's layer cache; its own names go
        at the next `tidy`."""
        ...

    async def tidy(self, store: Path) -> None:
        """Clean up what stopped builds left in `store`; called when no build uses it."""
        ...


class FakeBackend:
    """An in-memory backend that records what it was asked; failures are set per step."""

    def __init__(self) -> None:
        self.built: list[tuple[str, str]] = []
        self.pushed: list[str] = []
        self.fail_build: str | None = None
        self.push_failures = 0
        self.pulled: list[tuple[str, str]] = []
        self.triggers: dict[str, list[str]] = {}
        self.stores: list[Path] = []

    async def pull(
        self,
        images: Sequence[str],
        platform: Platform,
        store: Path,
        log: LineSink,
        authfile: Path | None,
    ) -> list[tuple[str, str]]:
        self.pulled += [(image, str(platform)) for image in images]
        return [(image, trigger) for image in images for trigger in self.triggers.get(image, [])]

    async def build(
        self,
        request: BuildRequest,
        checkout: Checkout,
        platform: Platform,
        store: Path,
        log: LineSink,
    ) -> ArchResult:
        log(f"fake build of {platform}")
        if self.fail_build is not None:
            raise BuildFailure("build_failed", self.fail_build)
        self.built.append((request.build_id, str(platform)))
        self.stores.append(store)
        return ArchResult(
            platform,
            f"fake/{request.build_id}:{platform.tag}",
            platform.architecture != native_architecture(),
        )

    async def push(
        self,
        request: BuildRequest,
        images: list[ArchResult],
        destination: str,
        store: Path,
        log: LineSink,
        authfile: Path | None,
    ) -> str:
        if self.push_failures > 0:
            self.push_failures -= 1
            raise BuildFailure("push_failed", "fake registry unavailable")
        self.pushed.append(destination)
        return "sha256:" + hashlib.sha256(destination.encode()).hexdigest()

    async def release(self, request: BuildRequest, images: list[ArchResult], store: Path) -> None:
        return None

    async def tidy(self, store: Path) -> None:
        return None
