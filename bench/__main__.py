"""`python -m bench [NAME ...]`: run the benchmarks under bench/ and print one row per figure.

Each `bench/bench_<name>.py` exposes `async def main() -> list[dict]` whose rows carry `name`,
`value`, `unit`, and where a target applies `baseline`, `ratio` and `target` (e.g. ">= 0.9");
an optional `detail` (text, such as a query plan) is printed indented under its row.
Ratios are what to compare: this machine is shared and noisy, absolute times are not.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import operator
import pkgutil
import sys
import time
import traceback
from typing import Any

import bench

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def verdict(row: dict[str, Any]) -> str:
    target, ratio = row.get("target"), row.get("ratio")
    if not target or ratio is None:
        return ""
    op, _, bound = str(target).partition(" ")
    return "ok" if _OPS[op](float(ratio), float(bound)) else "MISSED"


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return "" if value is None else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", help="benchmarks to run (default: all), e.g. auth storage"
    )
    args = parser.parse_args()
    found = sorted(
        m.name[6:] for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")
    )
    chosen = args.names or found
    unknown = set(chosen) - set(found)
    if unknown:
        parser.error(f"no such benchmark: {', '.join(sorted(unknown))} (have: {', '.join(found)})")
    missed = failed = 0
    for name in chosen:
        print(f"== {name}", flush=True)
        start = time.monotonic()
        try:
            module = importlib.import_module(f"bench.bench_{name}")
            rows = asyncio.run(module.main())
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            failed += 1
            continue
        for row in rows:
            v = verdict(row)
            missed += v == "MISSED"
            print(
                f"  {row['name']:<48} {fmt(row.get('value')):>12} {row.get('unit', ''):<8}"
                f" baseline {fmt(row.get('baseline')):>10}  ratio {fmt(row.get('ratio')):>7}"
                f"  target {row.get('target') or '-':<7} {v}",
                flush=True,
            )
            for line in str(row.get("detail") or "").splitlines():
                print(f"      {line}", flush=True)
        print(f"  ({time.monotonic() - start:.0f} s)", flush=True)
    print(f"benchmarks: {len(chosen) - failed} ran, {failed} crashed, {missed} targets missed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
