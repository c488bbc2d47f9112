"""The build sandbox for real: its own network with nothing on it, its own processes, limits."""

from __future__ import annotations

import socket
import uuid

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
