"""Time to recover from each fault, without a human: the fault suite's own scenarios.

Runs `tests/faults/` (20 apps or uploads in flight through: a Postgres restart, a RabbitMQ
restart, a broker loss, an S3 restart under the storage service and under real builds, a restart
of the real builder's and profiler's own Postgres, and a kill -9 of the ECR API, auth, storage,
the real builder and the real profiler) and reports what each
prints: seconds from the end of the outage until `/readyz` answers 200 again, and until all the
work in flight is done.

The baseline of each is the fault-free time of the same work in the same run, which the suite
measures beside it (`no fault [kind]`: the control tests of the played pipeline and of storage;
for the real builder and profiler, the first half of the same 20 apps, done before the kill).
The ratio is the recovery time over that baseline: how many times the fault-free time the fault
costs. No target: a recovery includes back-offs and a process start by design.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/faults"]
_FAULT = re.compile(
    r"^(?P<fault>[\w -]+?) \[(?P<kind>[\w-]+)\]: "
    r"(?:ready after (?P<ready>[\d.]+) s|ready throughout), "
    r"(?P<what>.+?) after (?P<done>[\d.]+) s(?: \(.*\))?$"
)
_BASELINE = re.compile(r"^no fault \[(?P<kind>[\w-]+)\]: (?P<what>.+?) after (?P<done>[\d.]+) s$")


def rows_from(text: str) -> list[dict[str, Any]]:
    """One row per figure the fault suite printed, each with its kind's baseline."""
    baselines = {
        m["kind"]: (m["what"], float(m["done"]))
        for m in map(_BASELINE.match, (line.strip() for line in text.splitlines()))
        if m is not None
    }
    rows: list[dict[str, Any]] = []
    for kind, (what, seconds) in sorted(baselines.items()):
        rows.append({"name": f"no fault [{kind}]: {what}", "value": seconds, "unit": "s"})
    for line in text.splitlines():
        match = _FAULT.match(line.strip())
        if match is None:
            continue
        kind = match["kind"]
        if kind not in baselines:
            raise RuntimeError(f"no fault-free baseline printed for [{kind}]")
        base = baselines[kind][1]
        fault = f"{match['fault']} [{kind}]"
        figures = [(f"{fault}: {match['what']}", float(match["done"]))]
        if match["ready"] is not None:
            figures.insert(0, (f"{fault}: to ready", float(match["ready"])))
        for label, seconds in figures:
            rows.append(
                {
                    "name": label,
                    "value": seconds,
                    "unit": "s",
                    "baseline": base,
                    "ratio": seconds / base if base > 0 else None,
                }
            )
    return rows


async def main() -> list[dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-s", *TESTS,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        why = [
            line for line in text.splitlines() if line.startswith(("E ", "FAILED", "ERROR tests/"))
        ]
        raise RuntimeError("the fault scenarios failed:\n" + "\n".join(why[-60:]))
    rows = rows_from(text)
    if not any("baseline" in row for row in rows):
        raise RuntimeError(f"the fault scenarios printed no recovery times:\n{text[-4000:]}")
    return rows
