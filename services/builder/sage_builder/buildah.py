"""The buildah backend: one sandboxed `buildah build` per platform (foreign ones under qemu), one push.

Each tenant's source repository has its own buildah storage (`LayerCache`), so `--layers` reuses
that repository's layers. Base images are pulled first, with the submitter's own rights; `buildah
build` then runs in a `Sandbox` (sandbox.py) with no credentials at all, under limits on memory,
pids, file sizes and disk; the index is pushed afterwards, outside it, with the builder's
credentials (docs/adr/0010-build-sandbox.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import procs
from .cache import directory_size, unmount_under
from .models import ArchResult, BuildFailure, BuildRequest, Checkout, Platform, native_architecture
from .procs import LineSink
from .sandbox import Sandbox

log = logging.getLogger(__name__)
BUILD_NAME = "localhost/sage-build:"  # a build's own images and index, by build id
NAME_FORMAT = "{{.Name}}:{{.Tag}}"
_ERROR_RE = re.compile(r"^(?:Error|error):\s*(.+)$")
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"
# Capabilities RUN steps lose beyond buildah's defaults: CAP_SYS_CHROOT lets root in a chroot
# step leave it (chroot isolation is a chroot(2)); the others serve no build.
DROPPED_CAPS = ("CAP_SYS_CHROOT", "CAP_SETFCAP", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE")


def _last_error(output: str, fallback: str) -> str:
    for line in reversed(output.splitlines()):
        match = _ERROR_RE.match(line.strip())
        if match:
            return match.group(1)[:500]
    return fallback


class BuildahBackend:
    """Builds and pushes with the buildah command line."""

    def __init__(
        self,
        *,
        buildah: str = "buildah",
        storage_driver: str = "auto",
        isolation: str = "chroot",
        memory: str = "4g",
        cpus: float = 2.0,
        nproc: int = 4096,
        max_file_bytes: int = 8 * 1024**3,
        disk_bytes: int = 20 * 1024**3,
        disk_poll_seconds: float = 2.0,
        tls_verify: bool = False,
        sandbox: bool = True,
    ) -> None:
        if isolation not in ("chroot", "oci"):
            raise ValueError(f"isolation must be 'chroot' or 'oci', not {isolation!r}")
        self.buildah, self.storage_driver, self.isolation = buildah, storage_driver, isolation
        self.memory, self.cpus, self.nproc = memory, cpus, nproc
        self.max_file_bytes, self.disk_bytes = max_file_bytes, disk_bytes
        self.disk_poll_seconds = disk_poll_seconds
        self.tls_flag = f"--tls-verify={'true' if tls_verify else 'false'}"
        # Off only for the benchmark's baseline ("today's" build): the service always sandboxes.
        self.sandbox = (
            Sandbox(buildah=buildah, memory_bytes=_bytes(memory), pids=nproc) if sandbox else None
        )
        self._driver: str | None = None
        self._probe_lock = asyncio.Lock()

    def _base(self, store: Path, driver: str) -> list[str]:
        root, runroot = str(store / "storage"), str(store / "run")
        return [self.buildah, "--root", root, "--runroot", runroot, "--storage-driver", driver]

    async def driver(self, scratch: Path) -> str:
        """The storage driver: as configured, or for "auto" overlay where it works, else vfs."""
        if self.storage_driver != "auto":
            return self.storage_driver
        async with self._probe_lock:
            if self._driver is None:
                probe = scratch / "driver-probe"
                done = await procs.run(
                    [*self._base(probe, "overlay"), "info"], env=self._env(probe)
                )
                await asyncio.to_thread(shutil.rmtree, probe, True)
                self._driver = "overlay" if done.returncode == 0 else "vfs"
                log.info("buildah storage driver chosen", extra={"driver": self._driver})
        return self._driver

    def _env(self, store: Path) -> dict[str, str]:
        """buildah's environment: nothing of the builder's own (its secrets stay out)."""
        tmp = store / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": os.environ.get(
                "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            ),
            "HOME": str(store),
            "TMPDIR": str(tmp),
            "LC_ALL": "C",
        }

    async def _run(self, store: Path, args: list[str], log: LineSink | None) -> procs.Completed:
        driver = await self.driver(store.parent)
        return await procs.run([*self._base(store, driver), *args], env=self._env(store), sink=log)

    async def pull(
        self,
        images: Sequence[str],
        platform: Platform,
        store: Path,
        log: LineSink,
        authfile: Path | None,
    ) -> list[tuple[str, str]]:
        """Pull the base images for `platform`, with the submitter's rights or anonymously; their
        ONBUILD triggers (Docker-format images keep them), which the build would run."""
        auth = ["--authfile", str(authfile)] if authfile is not None else []
        args = ["pull", "--platform", str(platform), self.tls_flag, "--retry", "1", *auth]
        triggers: list[tuple[str, str]] = []
        for image in images:
            log(f"== pulling {image} for {platform}")
            done = await self._run(store, [*args, image], log)
            if done.returncode != 0:
                why = _last_error(done.output, "the registry refused it")
                raise BuildFailure(
                    "build_failed", f"{platform}: base image {image} could not be pulled: {why}"
                )
            inspected = await self._inspect(store, image)
            if inspected is None:
                raise BuildFailure("build_failed", f"base image {image} could not be inspected")
            config = (inspected.get("Docker") or {}).get("config") or {}
            triggers += [(image, str(t)) for t in config.get("OnBuild") or []]
        return triggers

    async def _inspect(self, store: Path, image: str) -> dict[str, Any] | None:
        """What `buildah inspect` says of a local image; None when it cannot say."""
        done = await self._run(store, ["inspect", "--type", "image", image], None)
        with contextlib.suppress(ValueError):
            return json.loads(done.output) if done.returncode == 0 else None
        return None

    def _build_args(
        self, request: BuildRequest, checkout: Checkout, platform: Platform, iidfile: Path
    ) -> list[str]:
        period = 100_000
        args = [
            "build",
            "--platform",
            str(platform),
            "--isolation",
            self.isolation,
            # chroot isolation can only share the network namespace it runs in, which the
            # sandbox made empty; oci isolation makes its own, also empty.
            "--network",
            "host" if self.isolation == "chroot" and self.sandbox else "none",
            "--pull=never" if self.sandbox else "--pull=true",
            "--layers",
            "--memory",
            self.memory,
            "--cpu-period",
            str(period),
            "--cpu-quota",
            str(int(self.cpus * period)),
            "--ulimit",
            f"nproc={self.nproc}:{self.nproc}",
            "--ulimit",
            f"fsize={self.max_file_bytes}:{self.max_file_bytes}",
            *(f"--cap-drop={cap}" for cap in DROPPED_CAPS),
            self.tls_flag,
            "-f",
            str(checkout.dockerfile),
            # The image by its id, never a name: two builds whose last step came from the cache
            # name the same image, and buildah 1.28 writes an image's names back whole, so one
            # build's name can vanish under it ("locating just-written image ...: image not known").
            "--iidfile",
            str(iidfile),
        ]
        for key, value in sorted(request.build_args.items()):
            args += ["--build-arg", f"{key}={value}"]
        return [*args, str(checkout.context)]

    async def build(
        self,
        request: BuildRequest,
        checkout: Checkout,
        platform: Platform,
        store: Path,
        log: LineSink,
    ) -> ArchResult:
        emulated = platform.architecture != native_architecture()
        log(f"== building {platform}{' under emulation (qemu)' if emulated else ''}")
        with tempfile.TemporaryDirectory(dir=self._env(store)["TMPDIR"]) as tmp:
            iidfile = Path(tmp) / "image-id"
            args = self._build_args(request, checkout, platform, iidfile)
            if self.sandbox is None:
                done = await self._run(store, args, log)
            else:
                reason = await self.sandbox.check()
                if reason is not None:
                    raise BuildFailure("build_failed", f"the build sandbox cannot run: {reason}")
                done = await self._sandboxed(request, platform, store, args, log)
            image = iidfile.read_text().strip().removeprefix("sha256:") if iidfile.exists() else ""
        if done.returncode != 0 or not image:
            why = _last_error(done.output, "buildah build failed")
            if "exited on file size limit exceeded" in done.output:
                why += f" (a RUN step wrote a file over the limit of {self.max_file_bytes} bytes)"
            raise BuildFailure("build_failed", f"{platform}: {why}")
        return ArchResult(platform, image, emulated, await self._base_images(store, image))

    async def _sandboxed(
        self, request: BuildRequest, platform: Platform, store: Path, args: list[str], log: LineSink
    ) -> procs.Completed:
        """`buildah build` in the sandbox, stopped when the disk it fills passes the limit."""
        assert self.sandbox is not None
        driver = await self.driver(store.parent)
        argv = [*self._base(store, driver), *args]
        before = await asyncio.to_thread(directory_size, store)
        async with self.sandbox.cgroups(f"{request.build_id}-{platform.tag}") as groups:
            build = asyncio.ensure_future(
                procs.run(self.sandbox.wrap(argv, groups), env=self._env(store), sink=log)
            )
            try:
                while True:
                    finished, _ = await asyncio.wait({build}, timeout=self.disk_poll_seconds)
                    if finished:
                        done = build.result()
                        if done.returncode != 0 and self.sandbox.out_of_memory(groups):
                            raise BuildFailure(
                                "build_failed",
                                f"{platform}: a RUN step went over the build's memory limit "
                                f"of {self.memory} and was killed",
                            )
                        return done
                    used = await asyncio.to_thread(directory_size, store) - before
                    if used > self.disk_bytes:
                        raise BuildFailure(
                            "build_failed",
                            f"{platform}: the build wrote more than {self.disk_bytes} bytes "
                            "of disk and was stopped",
                        )
            finally:
                if not build.done():
                    build.cancel()
                    await asyncio.gather(build, return_exceptions=True)

    async def _base_images(self, store: Path, image: str) -> dict[str, str]:
        inspected = await self._inspect(store, image) or {}
        with contextlib.suppress(ValueError):
            notes = json.loads(inspected.get("Manifest") or "{}").get("annotations") or {}
            if BASE_NAME in notes and BASE_DIGEST in notes:
                return {notes[BASE_NAME]: notes[BASE_DIGEST]}
        return {}

    async def push(
        self,
        request: BuildRequest,
        images: list[ArchResult],
        destination: str,
        store: Path,
        log: LineSink,
        authfile: Path | None,
    ) -> str:
        index = f"{BUILD_NAME}index-{request.build_id}"
        await self._run(store, ["manifest", "rm", index], None)  # a redelivered build's leftover
        steps = [["manifest", "create", index]]
        steps += [["manifest", "add", index, image.local_ref] for image in images]
        for step in steps:
            done = await self._run(store, step, log)
            if done.returncode != 0:
                raise BuildFailure(
                    "build_failed", _last_error(done.output, "could not assemble the index")
                )
        with tempfile.TemporaryDirectory(dir=store / "tmp") as tmp:
            digestfile = Path(tmp) / "digest"
            args = ["manifest", "push", "--all", self.tls_flag, "--digestfile", str(digestfile)]
            if authfile is not None:
                args += ["--authfile", str(authfile)]
            log(f"== pushing {len(images)} image(s) and their index to {destination}")
            done = await self._run(store, [*args, index, f"docker://{destination}"], log)
            digest = digestfile.read_text().strip() if digestfile.exists() else ""
            if done.returncode != 0 or not digest:
                # buildah 1.28 can end `manifest push --all` with status 0 and no digest when the
                # registry is gone mid-copy: an empty digest file is the failure it reports.
                fallback = "buildah manifest push ended without pushing the index"
                raise BuildFailure("push_failed", _last_error(done.output, fallback))
            return digest

    async def tidy(self, store: Path) -> None:
        """With no build using `store`: remove working containers a stopped build left, drop the
        builds' own names (released or left by a killed builder), unmount."""
        await self._run(store, ["rm", "--all"], None)
        listed = await self._run(store, ["images", "--noheading", "--format", NAME_FORMAT], None)
        names = {line.strip() for line in listed.output.splitlines()}  # a row per name
        for name in sorted(n for n in names if n.startswith(BUILD_NAME)):
            # One at a time, and a list with `manifest rm`: buildah 1.28's `rmi` of several names
            # of one image removes the image, and of a list removes the image it holds.
            index = name.startswith(f"{BUILD_NAME}index-")
            await self._run(store, ["manifest", "rm", name] if index else ["rmi", name], None)
        await asyncio.to_thread(unmount_under, store)

    async def release(self, request: BuildRequest, images: list[ArchResult], store: Path) -> None:
        """Keep the newest image of each platform under a stable name, so the final step's layer
        stays cached. Builds refer to their images by id; the names a build does make (its index)
        go when the store is idle (`tidy`): an image whose last name goes is deleted, and a build
        beside this one may have just found it in its layer cache."""
        for image in images:
            await self._run(
                store, ["tag", image.local_ref, f"localhost/sage-cache:{image.platform.tag}"], None
            )


def _bytes(size: str) -> int:
    """`4g`, `512m`, `1024k` or a plain number of bytes, as buildah's --memory takes them."""
    text = size.strip().lower().removesuffix("b")
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)
