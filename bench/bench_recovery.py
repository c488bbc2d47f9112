"""Time to recover from each fault, without a human: the fault suite's own scenarios.

Runs `tests/faults/` (apps in flight through the ECR API across a Postgres restart, a broker loss
and a kill -9 of the ECR API) and the storage S3-outage test, and reports what they print: seconds from the end of the
outage until `/readyz` answers 200, and until every app in flight reached review (or the sweeper
cleared what the outage left). The ratio is to a 10 s recovery budget (target <= 1).
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = 10.0
TESTS = ["tests/faults", "tests/integration/test_storage_outage.py"]
_LINE = re.compile(
    r"^(?P<fault>[\w -]+): ready after (?P<ready>[\d.]+) s, (?P<what>.+?) after (?P<done>[\d.]+) s$"
)


async def main() -> list[dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-s", *TESTS,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"the fault scenarios failed:\n{text[-4000:]}")
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        fault = match["fault"]
        for label, value in (
            (f"{fault}: to ready", match["ready"]),
            (f"{fault}: {match['what']}", match["done"]),
        ):
            seconds = float(value)
            rows.append(
                {
                    "name": label,
                    "value": seconds,
                    "unit": "s",
                    "baseline": BUDGET_SECONDS,
                    "ratio": seconds / BUDGET_SECONDS,
                    "target": "<= 1",
                }
            )
    if not rows:
        raise RuntimeError(f"the fault scenarios printed no recovery times:\n{text[-4000:]}")
    return rows
