"""The build pipeline: fetch, build each platform, push the index, read it back, report.

`Builder.run` always ends in a `BuildDone` (success, or failure with its class and the log's last
lines) unless the service itself is stopping, in which case the build is left for redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sage_common.redact import redact_urls
from sage_common.schemas import AppSubmitted, ArchImage, BuildDone, MetaFile
from sage_common.work import Cancelled, Job, TimedOut

from .backend import BuildBackend
from .buildlog import BuildLog, LogSink, Scrubber
from .cache import LayerCache
from .dockerfile import check_triggers
from .dockerfile import plan as dockerfile_plan
from .metafiles import MetaLimits, import_files
from .models import ArchResult, BuildFailure, BuildRequest, Checkout, Platform, PushResult
from .registry import USER_RE, Credentials, RegistryClient, RegistryError, write_authfile
from .source import GitFetcher, check_context, locate

log = logging.getLogger(__name__)
T = TypeVar("T")
# A registry repository name (lower case path components) and a tag.
APP_ID_RE = re.compile(
    r"^[a-z0-9]+(?:[._-][a-z0-9]+)*/[a-z0-9]+(?:[._-][a-z0-9]+)*:[\w][\w.-]{0,127}$"
)


def request_from_event(data: AppSubmitted) -> BuildRequest:
    """The build an `app.submitted` asks for; a malformed one still gets a build with a failure."""
    src = data.source
    platforms: list[Platform] = []
    for text in src.architectures or ["linux/amd64"]:
        with contextlib.suppress(ValueError):
            plat = Platform.parse(text)
            if plat not in platforms:
                platforms.append(plat)
    return BuildRequest(
        build_id=data.build_id,
        app_id=data.app_id,
        url=src.url,
        branch=src.branch,
        tag=src.tag,
        commit=src.commit,
        directory=src.directory,
        dockerfile=src.dockerfile,
        platforms=tuple(platforms),
        build_args=dict(src.build_args),
        submitter=data.submitter,
        testing=data.testing,
        hardware=data.hardware,
    )


def log_key(request: BuildRequest) -> str:
    return f"builds/{request.repository}/{request.version}/{request.build_id}.log"


async def supervise(work: Awaitable[T], job: Job, limit: float) -> T:
    """`work`'s result, unless the job is cancelled or the timeout passes first (then it stops)."""
    try:
        return await job.run(work, limit)
    except Cancelled as cancelled:
        raise BuildFailure("cancelled", cancelled.reason) from None
    except TimedOut:
        raise BuildFailure(
            "timeout", f"the build took longer than {limit:.0f}s and was stopped"
        ) from None


@dataclass
class Progress:
    """What a build learned before it ended, reported even when it fails."""

    commit: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    meta_files: list[MetaFile] = field(default_factory=list)


class Builder:
    """Runs builds with one backend, one fetcher, one layer cache and one log store."""

    def __init__(
        self,
        *,
        backend: BuildBackend,
        fetcher: GitFetcher,
        cache: LayerCache,
        sink: LogSink,
        registry: str,
        registry_client: RegistryClient,
        creds: Credentials | None,
        work_dir: Path,
        timeout: float,
        push_attempts: int = 4,
        push_backoff: float = 1.0,
        log_options: dict[str, Any] | None = None,
        meta_limits: MetaLimits | None = None,
        base_registries: Sequence[str] = (),
    ) -> None:
        self.backend, self.fetcher, self.cache, self.sink = backend, fetcher, cache, sink
        self.registry, self.registry_client, self.creds = registry, registry_client, creds
        self.work_dir, self.timeout = work_dir, timeout
        self.push_attempts, self.push_backoff = max(1, push_attempts), push_backoff
        self.log_options = log_options or {}
        self.meta_limits = meta_limits or MetaLimits()
        # Registries base images may come from: our own (pulled with anyone's rights) and these.
        self.base_registries = [registry, *base_registries]

    async def run(self, request: BuildRequest, job: Job) -> BuildDone:
        """Build, push and describe the outcome; cancels and timeouts become failures too."""
        started = time.monotonic()
        progress = Progress()
        secrets = [self.creds.password, self.creds.basic] if self.creds else []
        blog = BuildLog(self.sink, log_key(request), Scrubber(secrets), **self.log_options)
        async with blog:
            blog(f"build {request.build_id} of {request.app_id} from {request.url}")
            try:
                done = await supervise(
                    self.build_and_push(request, blog, progress), job, self.timeout
                )
                blog(f"build succeeded: {done.image}@{done.index_digest}")
            except BuildFailure as failure:
                blog(f"build failed ({failure.error_class}): {failure.message}")
                done = _failure(request, failure, blog.tail())
            except Exception as exc:  # noqa: BLE001 - one result for every build, even on a builder bug
                log.exception("build crashed", extra={"build_id": request.build_id})
                why = f"internal builder error ({type(exc).__name__})"
                blog(f"build failed: {why}")
                done = _failure(request, BuildFailure("build_failed", why), blog.tail())
        done.duration_seconds = round(time.monotonic() - started, 3)
        done.log_location = blog.location if blog.uploaded else None
        # What the build learned however it ended, and the app's parts the profiler reads.
        done.commit, done.provenance = progress.commit, progress.provenance
        done.meta_files = progress.meta_files
        done.testing, done.hardware = request.testing, request.hardware
        return done

    async def build_and_push(
        self, request: BuildRequest, blog: BuildLog, progress: Progress
    ) -> BuildDone:
        """The pipeline itself, to a successful `build.done`; raises `BuildFailure` for every way
        it can go wrong."""
        if not APP_ID_RE.match(request.app_id):
            raise BuildFailure("build_failed", f"{request.app_id!r} is not namespace/name:version")
        if not request.platforms:
            raise BuildFailure("build_failed", "no valid architecture was asked for")
        workdir = self.work_dir / "builds" / request.build_id
        await asyncio.to_thread(shutil.rmtree, workdir, True)  # a killed attempt's leftovers
        try:
            async with self.cache.use(request.url, request.namespace) as store:
                src = workdir / "src"
                progress.commit = await self.fetcher.fetch(request, src, blog, store / "git")
                checkout = locate(src, progress.commit, request.directory, request.dockerfile)
                text = await asyncio.to_thread(checkout.dockerfile.read_text, "utf-8", "replace")
                plan = dockerfile_plan(text, request.build_args, self.base_registries)
                if plan.binds_context:
                    await asyncio.to_thread(check_context, checkout)
                progress.meta_files = await self._meta_files(request, checkout, blog)
                progress.provenance = {
                    "url": request.url,
                    "ref": request.tag or request.branch,
                    "commit": checkout.commit,
                    "directory": request.directory,
                    "dockerfile": request.dockerfile,
                    "dockerfile_digest": checkout.dockerfile_digest,
                    "build_args": dict(request.build_args),
                }
                images = []
                for platform in request.platforms:
                    pullauth = self._pull_authfile(request, workdir / "pull-auth", plan.images)
                    try:
                        triggers = await self.backend.pull(
                            plan.images, platform, store, blog, pullauth
                        )
                    finally:
                        if pullauth is not None:
                            pullauth.unlink(missing_ok=True)  # gone before any step runs
                    check_triggers(triggers, request.build_args, self.base_registries)
                    images.append(
                        await self.backend.build(request, checkout, platform, store, blog)
                    )
                progress.provenance["base_images"] = {
                    str(i.platform): i.base_images for i in images if i.base_images
                }
                # The builder's credentials exist only now, after every build step has ended.
                authfile = None
                if self.creds is not None:
                    authfile = write_authfile(workdir / "auth", self.registry, self.creds)
                destination = f"{self.registry}/{request.repository}:{request.version}"
                push = await self._push(request, images, destination, store, blog, authfile)
                await self.backend.release(request, images, store)
            return _success(request, push, images)
        finally:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, workdir, True))

    async def _meta_files(
        self, request: BuildRequest, checkout: Checkout, blog: BuildLog
    ) -> list[MetaFile]:
        """The app's ecr-meta folder, checked and stored; a problem there never fails the build."""
        try:
            return await import_files(checkout, request, self.sink, self.meta_limits, blog)
        except Exception as exc:  # noqa: BLE001 - the pictures are not worth a failed build
            log.exception("ecr-meta import crashed", extra={"build_id": request.build_id})
            blog(f"ecr-meta: not imported (internal builder error: {type(exc).__name__})")
            return []

    def _pull_authfile(
        self, request: BuildRequest, directory: Path, images: Sequence[str]
    ) -> Path | None:
        """Credentials that pull our registry's images with the submitter's rights; without a
        submitter, none: the pull is anonymous (what anyone may read)."""
        if self.creds is None or not images or not USER_RE.match(request.submitter):
            return None
        creds = self.creds.on_behalf(request.submitter)
        return write_authfile(directory, self.registry, creds)

    async def _push(
        self,
        request: BuildRequest,
        images: list[ArchResult],
        destination: str,
        store: Path,
        blog: BuildLog,
        authfile: Path | None,
    ) -> PushResult:
        last = ""  # why the last attempt failed
        for attempt in range(1, self.push_attempts + 1):
            try:
                await self.backend.push(request, images, destination, store, blog, authfile)
                digest, digests = await self.registry_client.index(
                    request.repository, request.version
                )
                missing = [str(i.platform) for i in images if str(i.platform) not in digests]
                if missing:
                    raise BuildFailure(
                        "push_failed", f"the registry's index lacks {', '.join(missing)}"
                    )
                return PushResult(destination, digest, digests)
            except RegistryError as exc:
                last = str(exc)
            except BuildFailure as exc:
                if exc.error_class != "push_failed":
                    raise
                last = exc.message
                try:  # say why, where the push tool could not
                    await self.registry_client.ping()
                except RegistryError as down:
                    last = str(down)
            if attempt < self.push_attempts:
                delay = self.push_backoff * 2 ** (attempt - 1)
                blog(f"push attempt {attempt} failed ({last}); retrying in {delay:.0f}s")
                await asyncio.sleep(delay)
        raise BuildFailure(
            "push_failed",
            f"the registry did not take the image in {self.push_attempts} attempts: {last}",
        )


def _success(request: BuildRequest, push: PushResult, archs: list[ArchResult]) -> BuildDone:
    return BuildDone(
        app_id=request.app_id,
        build_id=request.build_id,
        status="success",
        image=push.reference,
        index_digest=push.index_digest,
        images=[
            ArchImage(
                architecture=str(arch.platform),
                digest=push.digests[str(arch.platform)],
                emulated=arch.emulated,
            )
            for arch in archs
        ],
    )


def _failure(request: BuildRequest, failure: BuildFailure, tail: list[str]) -> BuildDone:
    return BuildDone(
        app_id=request.app_id,
        build_id=request.build_id,
        status="failure",
        error_class=failure.error_class,
        error=redact_urls(failure.message),
        log_tail=tail,
    )
