"""The buildah backend: one `buildah build` per platform (foreign ones under qemu), one index push.

Each source repository has its own buildah storage (`LayerCache`), so `--layers` reuses that
repository's layers. RUN steps run under runc (`--isolation oci`) with no network unless configured,
memory/CPU/process limits, buildah's default (unprivileged) capability set and no host
mounts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from . import procs
from .cache import unmount_under
from .model import ArchResult, BuildFailure, BuildRequest, Checkout, Platform, native_architecture
from .procs import LineSink

log = logging.getLogger(__name__)
# ADD with a URL: buildah downloads it itself, on the builder's own network, not the build's.
_REMOTE_ADD_RE = re.compile(r"(?im)^\s*ADD\s+(?:--\S+\s+)*(?:https?|git)://")
_ERROR_RE = re.compile(r"^(?:Error|error):\s*(.+)$")
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"


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
        isolation: str = "oci",
        network: str = "none",
        memory: str = "4g",
        cpus: float = 2.0,
        nproc: int = 4096,
        tls_verify: bool = False,
    ) -> None:
        if network not in ("none", "host"):
            raise ValueError(f"build network must be 'none' or 'host', not {network!r}")
        self.buildah, self.storage_driver, self.isolation = buildah, storage_driver, isolation
        self.network, self.memory, self.cpus, self.nproc = network, memory, cpus, nproc
        self.tls_verify = tls_verify
        self._driver: str | None = None
        self._probe_lock = asyncio.Lock()

    def _base(self, store: Path, driver: str) -> list[str]:
        return [
            self.buildah,
            "--root",
            str(store / "storage"),
            "--runroot",
            str(store / "run"),
            "--storage-driver",
            driver,
        ]

    async def driver(self, scratch: Path) -> str:
        """The storage driver: as configured, or for "auto" overlay where it works, else vfs."""
        if self.storage_driver != "auto":
            return self.storage_driver
        if self._driver is None:
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

    def _name(self, request: BuildRequest, what: str) -> str:
        return f"localhost/sage-build:{what}-{request.build_id}"

    async def build(
        self,
        request: BuildRequest,
        checkout: Checkout,
        platform: Platform,
        store: Path,
        log: LineSink,
        authfile: Path | None,
    ) -> ArchResult:
        text = await asyncio.to_thread(checkout.dockerfile.read_text, "utf-8", "replace")
        if self.network == "none" and _REMOTE_ADD_RE.search(text):
            raise BuildFailure(
                "build_failed", "ADD from a URL needs network, which builds here have not"
            )
        name = self._name(request, platform.tag)
        emulated = platform.architecture != native_architecture()
        log(f"== building {platform}{' under emulation (qemu)' if emulated else ''}")
        period = 100_000
        args = [
            "build",
            "--platform",
            str(platform),
            "--isolation",
            self.isolation,
            "--network",
            self.network,
            "--layers",
            "--memory",
            self.memory,
            "--cpu-period",
            str(period),
            "--cpu-quota",
            str(int(self.cpus * period)),
            "--ulimit",
            f"nproc={self.nproc}:{self.nproc}",
            f"--tls-verify={'true' if self.tls_verify else 'false'}",
            "-f",
            str(checkout.dockerfile),
            "-t",
            name,
        ]
        if authfile is not None:
            args += ["--authfile", str(authfile)]
        for key, value in sorted(request.build_args.items()):
            args += ["--build-arg", f"{key}={value}"]
        done = await self._run(store, [*args, str(checkout.context)], log)
        if done.returncode != 0:
            raise BuildFailure(
                "build_failed", f"{platform}: {_last_error(done.output, 'buildah build failed')}"
            )
        return ArchResult(platform, name, emulated, await self._base_images(store, name))

    async def _base_images(self, store: Path, name: str) -> dict[str, str]:
        done = await self._run(store, ["inspect", "--type", "image", name], None)
        if done.returncode != 0:
            return {}
        try:
            manifest = json.loads(json.loads(done.output).get("Manifest") or "{}")
        except ValueError:
            return {}
        notes = manifest.get("annotations") or {}
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
        index = self._name(request, "index")
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
            args = [
                "manifest",
                "push",
                "--all",
                f"--tls-verify={'true' if self.tls_verify else 'false'}",
                "--digestfile",
                str(digestfile),
            ]
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
        """With no build using `store`: remove working containers a stopped build left, unmount."""
        await self._run(store, ["rm", "--all"], None)
        await asyncio.to_thread(unmount_under, store)

    async def release(self, request: BuildRequest, images: list[ArchResult], store: Path) -> None:
        await self._run(store, ["manifest", "rm", self._name(request, "index")], None)
        for image in images:
            # Keep the newest image of each platform under a stable name, so the final step's
            # layer stays cached; the build's own name goes.
            await self._run(
                store, ["tag", image.local_ref, f"localhost/sage-cache:{image.platform.tag}"], None
            )
            await self._run(store, ["rmi", image.local_ref], None)
