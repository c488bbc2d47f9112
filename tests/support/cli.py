"""The `sage` command line as integration tests run it: a subprocess that leaves the loop free."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Completed:
    """What a `sage` command did: exit code and its two streams, decoded."""

    code: int
    out: str
    err: str


async def run_sage(
    host: str, token: str | None, *args: str, cwd: Path | None = None, within: float = 300.0
) -> Completed:
    """Run `python -m sage_client ARGS` against `host`, with no SAGE_ setting of this process;
    the test fails when it runs past `within` seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGE_")}
    env.update(SAGE_HOST=host, SAGE_TIMEOUT="30")
    if token:
        env["SAGE_USER_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sage_client", *args, cwd=cwd or ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(
            f"sage {' '.join(args)} ran past {within} s:\n{out.decode()}\n{err.decode()}"
        ) from None
    assert proc.returncode is not None
    return Completed(proc.returncode, out.decode(), err.decode())
