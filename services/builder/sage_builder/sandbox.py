"""The sandbox a build's `buildah build` runs in, and so every RUN step of it.

buildah 1.28's chroot isolation (the only one that works in an unprivileged container) shares the
builder's network, PID and IPC namespaces and bind-mounts the host's /proc into each step
(docs/adr/0010-build-sandbox.md). So the whole `buildah build` runs in namespaces of its own:
- network: only a loopback that is down, so nothing of the builder's (Postgres, RabbitMQ, S3, the
  registry) can be reached, on loopback or elsewhere;
- PID, with a fresh /proc: a step sees that build's processes only, not the builder or other
  builds' command lines; IPC and UTS likewise;
- mount, private: what buildah mounts dies with the namespace;
- rootless, a user namespace first (`buildah unshare`), in which the others are made;
- a memory and pids cgroup where the builder may make one (root, or a delegated cgroup).
Base images are pulled before, and results pushed after, outside it: credentials never enter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

from . import procs

log = logging.getLogger(__name__)

UNSHARE = [
    "unshare",
    "--net",
    "--pid",
    "--ipc",
    "--uts",
    "--mount",
    "--propagation",
    "private",
    "--fork",
    "--kill-child",
    "--mount-proc",
]
# The parent death signal survives the exec of the shell and of `unshare` (not their forks).
WITH_THE_BUILDER = ["setpriv", "--pdeathsig", "KILL", "--"]
# Writes the shell's pid into each cgroup named before `--`, then becomes the command after it.
_JOIN = 'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
CGROUP_PARENT = "sage-builds"


class Sandbox:
    """Wraps a command line in the namespaces above, inside cgroups limiting memory and pids."""

    def __init__(
        self,
        *,
        buildah: str = "buildah",
        memory_bytes: int = 4 * 1024**3,
        pids: int = 4096,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
    ) -> None:
        self.buildah, self.memory_bytes, self.pids = buildah, memory_bytes, pids
        self.cgroup_root = cgroup_root
        self.rootless = os.geteuid() != 0
        self._works = False

    def wrap(self, argv: list[str], cgroups: list[Path]) -> list[str]:
        """`argv` run inside the sandbox (and in `cgroups`, given by `cgroups()`).

        Killed with the builder: `unshare` gets SIGKILL when the builder dies (kill -9, OOM),
        `--kill-child` passes it to buildah, and the PID namespace takes every step with it, so
        no orphaned build keeps writing to the layer cache the resumed build uses.
        """
        inner = [*UNSHARE, *argv]
        if self.rootless:
            # A user namespace mapped from /etc/subuid first, in which the other namespaces and
            # the fresh /proc can be made without privileges.
            inner = [self.buildah, "unshare", "--", *inner]
        if cgroups:
            procs = [str(group / "cgroup.procs") for group in cgroups]
            inner = ["/bin/sh", "-c", _JOIN, "sage-sandbox", *procs, "--", *inner]
        return [*WITH_THE_BUILDER, *inner]

    @contextlib.asynccontextmanager
    async def cgroups(self, name: str) -> AsyncIterator[list[Path]]:
        """Cgroups for one build, removed (their processes killed) afterwards; [] where none."""
        made: list[Path] = []
        try:
            await asyncio.to_thread(self._make, name, made)
        except OSError as exc:
            log.debug("no build cgroup", extra={"error": str(exc)})
            await asyncio.to_thread(self._remove, made)  # the part made before the failure
            made = []
        try:
            yield made
        finally:
            await asyncio.shield(asyncio.to_thread(self._remove, made))

    @staticmethod
    def out_of_memory(groups: list[Path]) -> bool:
        """Whether the kernel killed a process of these cgroups for going over their memory."""
        for group in groups:
            with contextlib.suppress(OSError, ValueError):
                if (group / "memory.events").exists():  # cgroup v2
                    for entry in (group / "memory.events").read_text().splitlines():
                        key, _, value = entry.partition(" ")
                        if key == "oom_kill" and int(value) > 0:
                            return True
                elif (group / "memory.failcnt").exists():  # cgroup v1
                    oom = (group / "memory.oom_control").read_text()
                    if "oom_kill " in oom:
                        for entry in oom.splitlines():
                            key, _, value = entry.partition(" ")
                            if key == "oom_kill" and int(value) > 0:
                                return True
                    elif int((group / "memory.failcnt").read_text()) > 0:
                        return True
        return False

    def _make(self, name: str, made: list[Path]) -> list[Path]:
        """Make the build's cgroups, each put in `made` as soon as it exists; `made` again."""
        root = self.cgroup_root
        if (root / "cgroup.controllers").exists():  # cgroup v2
            parent = root / CGROUP_PARENT
            parent.mkdir(exist_ok=True)
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
            group = parent / name
            self._remove([group])  # a killed builder's, for the build it left and now resumes
            group.mkdir()
            made.append(group)
            (group / "memory.max").write_text(str(self.memory_bytes))
            (group / "memory.swap.max").write_text("0")
            (group / "pids.max").write_text(str(self.pids))
            return made
        for controller, limits in (
            ("memory", {"memory.limit_in_bytes": self.memory_bytes}),
            ("pids", {"pids.max": self.pids}),
        ):
            if not (root / controller).is_dir():
                continue
            group = root / controller / CGROUP_PARENT / name
            self._remove([group])
            group.mkdir(parents=True)
            made.append(group)
            for key, value in limits.items():
                (group / key).write_text(str(value))
        return made

    def _remove(self, groups: list[Path]) -> None:
        """Kill what is left in `groups` until they can be removed (a fork bomb takes a while)."""
        deadline = time.monotonic() + 30
        for group in groups:
            while True:
                with contextlib.suppress(OSError):
                    for pid in (group / "cgroup.procs").read_text().split():
                        with contextlib.suppress(OSError):
                            os.kill(int(pid), signal.SIGKILL)
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # processes still leaving
                    if time.monotonic() > deadline:
                        log.warning("build cgroup left behind", extra={"cgroup": str(group)})
                        break
                    time.sleep(0.1)

    async def check(self) -> str | None:
        """Why the sandbox cannot be made here, or None: it is tried once for real, then trusted.

        A container that masks /proc paths, or refuses user namespaces, cannot make it; the
        builder then reports not ready and fails builds, it never builds unsandboxed.
        """
        if self._works:
            return None
        for tool in ("unshare", "setpriv", *([self.buildah] if self.rootless else [])):
            if shutil.which(tool) is None:
                return f"{tool} is not installed"
        done = await procs.run(self.wrap(["true"], []), env={"PATH": os.environ.get("PATH", "")})
        if done.returncode != 0:
            return f"its namespaces cannot be made here: {done.output.strip()[-300:]}"
        self._works = True
        return None
