"""The build sandbox for real: its own network with nothing on it, its own processes, limits."""

from __future__ import annotations

import asyncio
import random
import socket
import sys
import time
import uuid
from pathlib import Path

from sage_builder import procs
from sage_builder.sandbox import Sandbox

PROBE = (
    "import os, socket\n"
    "s = socket.socket()\n"
    "s.settimeout(2)\n"
    "try:\n"
    "    s.connect(('127.0.0.1', int(os.environ['PORT'])))\n"
    "    print('REACHED')\n"
    "except OSError as exc:\n"
    "    print('refused', exc.errno)\n"
    "print('pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
)


async def test_a_sandboxed_command_reaches_nothing_and_sees_only_its_own_processes(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        sandbox = Sandbox()
        assert await sandbox.check() is None
        async with sandbox.cgroups(f"test-{uuid.uuid4().hex[:8]}") as groups:
            argv = sandbox.wrap(["python3", "-c", PROBE], groups)
            done = await procs.run(argv, env={"PATH": "/usr/bin:/bin", "PORT": str(port)})
    assert done.returncode == 0, done.output
    assert "REACHED" not in done.output and "refused 101" in done.output  # ENETUNREACH
    assert "pids [1]" in done.output


async def test_the_pids_limit_stops_forks_inside_the_sandbox():
    sandbox = Sandbox(pids=40)
    script = "n=0; while [ $n -lt 500 ]; do sleep 30 & n=$((n+1)); done; echo all-started"
    async with sandbox.cgroups(f"test-{uuid.uuid4().hex[:8]}") as groups:
        assert groups  # tests run as root, who can always make them
        done = await procs.run(sandbox.wrap(["sh", "-c", script], groups))
    assert "all-started" not in done.output and "fork" in done.output.lower()


def _alive(marker: str) -> list[int]:
    """Pids of `sleep marker` processes (not of the sandbox's commands that start them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == f"sleep\0{marker}\0".encode():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def _until(check, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


def _marked_sleep() -> str:
    """A `sleep` argument no other process on the machine has: 299.<random digits>."""
    return f"299.{random.randrange(10**8, 10**9)}"


async def test_a_sandboxed_build_dies_with_a_builder_killed_by_sigkill():
    marker = _marked_sleep()
    sandbox = Sandbox()
    async with sandbox.cgroups(f"test-{uuid.uuid4().hex[:8]}") as groups:
        argv = sandbox.wrap(["sleep", marker], groups)
        # A stand-in builder: starts the sandbox as the builder does, then is killed -9.
        spawn = "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(300)"
        parent = await asyncio.create_subprocess_exec(sys.executable, "-c", spawn, *argv)
        try:
            assert await _until(lambda: bool(_alive(marker))), "the sandboxed step never started"
            parent.kill()
            await parent.wait()
            assert await _until(lambda: not _alive(marker)), "the build outlived its builder"
        finally:
            if parent.returncode is None:
                parent.kill()
                await parent.wait()


async def test_a_killed_builders_cgroup_is_cleared_for_the_resumed_build():
    name = f"test-{uuid.uuid4().hex[:8]}"
    sandbox = Sandbox()
    left = sandbox._make(name, [])  # as a builder killed mid-build leaves it, a step still in it
    marker = _marked_sleep()
    step = await asyncio.create_subprocess_exec(*sandbox.wrap(["sleep", marker], left))
    try:
        assert await _until(lambda: bool(_alive(marker)))
        async with sandbox.cgroups(name) as groups:
            assert groups == left  # limited again, not built without its cgroup
            assert await _until(lambda: not _alive(marker)), "the old step still runs"
            assert (groups[0] / "cgroup.procs").read_text().split() == []
    finally:
        if step.returncode is None:
            step.kill()
        await step.wait()


async def test_a_cgroup_refused_half_way_is_not_left_behind():
    name = f"test-{uuid.uuid4().hex[:8]}"
    sandbox = Sandbox(pids=-5)  # the kernel refuses the pids limit, after the memory one
    async with sandbox.cgroups(name) as groups:
        assert groups == []
    places = [Path(), Path("memory"), Path("pids")]  # cgroup v2; v1's two controllers
    left = [sandbox.cgroup_root / p / "sage-builds" / name for p in places]
    assert not [group for group in left if group.exists()]
