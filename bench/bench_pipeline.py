"""How the pipeline's time grows with the queue: 1, 20 and 100 apps submitted at once.

The ECR's part first (`bench/_pipeline_ecr.py`): N submissions at once over HTTP to the real
ECR API, to the last `review.requested`, with the builder and profiler played (no build work).
Then the builder's: the real builder (bus, claim, git fetch, buildah build, index push to the registry, log upload,
outbox), as `bench_builder` runs it, is handed N `app.submitted` events at once; the figure is
the time from the first submit to the last `build.done`, and per app that time / N. A queue
that costs the same per app at 100 as at 1 is linear (ratio 1 to the 1-app case); a ratio that
grows is worse than linear. Builds run `concurrency` at a time (the builder's setting, 2 here),
so per-app time at 20 and 100 is also expected to fall below the 1-app time, not only to stay.

What each app's work is: `FROM scratch`, `COPY` a static busybox (2 MB), no `RUN`; amd64 only;
each in a git repository of its own (copies of one): the builder keeps one layer store per
source, so no build finds another's layers cached. Real apps compile and install for minutes;
these are built in about a second, so what shows is the pipeline's own cost per app (fetch,
build, push, log upload, events), which is what could grow worse than linearly with the queue.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import Any

SIZES = (1, 20, 100)
DOCKERFILE = 'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "true"]\n'
CONCURRENCY = 2


def _rows(times: dict[int, float]) -> list[dict[str, Any]]:
    one = times[min(times)]
    return [
        {
            "name": f"pipeline (builder): {n} apps queued at once, per app",
            "value": total / n,
            "unit": "s",
            "baseline": one,
            "ratio": total / n / one,
            "target": None,
            "detail": f"submit of the first -> build.done of the last: {total:.1f} s for {n} "
            f"(x{total / one:.1f} the 1-app time for x{n} the apps); each app: FROM scratch + COPY "
            f"busybox, no RUN, built and pushed for amd64, {CONCURRENCY} builds at a time",
        }
        for n, total in sorted(times.items())
    ]


async def main() -> list[dict[str, Any]]:
    from bench import _pipeline_ecr

    ecr = await _pipeline_ecr.growth(SIZES)
    return _ecr_rows(ecr) + _rows(await _builder_growth())


def _ecr_rows(times: dict[int, float]) -> list[dict[str, Any]]:
    one = times[min(times)]
    return [
        {
            "name": f"pipeline (ECR): {n} apps submitted at once, per app",
            "value": total / n,
            "unit": "s",
            "baseline": one,
            "ratio": total / n / one,
            "target": None,
            "detail": f"first submit -> last review.requested: {total:.2f} s for {n}; each app: "
            "submit over HTTP, outbox, bus, state machine; builder and profiler played "
            "(answer at once, no build or profile work)",
        }
        for n, total in sorted(times.items())
    ]


async def _builder_growth() -> dict[int, float]:
    from bench._builder_stack import AMQP_URL, builder_stack
    from tests.support.builder import BUSYBOX, Harness, commit_all, running_builder

    async with builder_stack("pipeline", concurrency=CONCURRENCY) as stack:
        config, tmp, gits = stack.config, stack.tmp, stack.gits
        work = tmp / "app"
        work.mkdir()
        shutil.copy(BUSYBOX["amd64"], work / "busybox")
        (work / "Dockerfile").write_text(DOCKERFILE)
        commit_all(work, "bench app")
        await asyncio.to_thread(gits.publish, "app", work)
        names = {n: [f"q{n}a{i}" for i in range(n)] for n in SIZES}
        for name in ["warm", *(a for batch in names.values() for a in batch)]:
            await asyncio.to_thread(
                shutil.copytree, gits.base / "app.git", gits.base / f"{name}.git"
            )

        async with (
            running_builder(config),
            Harness.open(AMQP_URL, config.exchange, gits.url) as harness,
        ):

            async def queue(batch: list[str]) -> float:
                started = time.perf_counter()
                ids = [await harness.submit(f"bench/{a}:1.0", a) for a in batch]
                done = [await harness.events.done(i, within=900) for i in ids]
                elapsed = time.perf_counter() - started
                failed = [d for d in done if d.status != "success"]
                if failed:
                    raise RuntimeError(f"{len(failed)} builds failed, e.g. {failed[0].error}")
                return elapsed

            await queue(["warm"])  # buildah, registry and token service warmed once
            return {n: await queue(batch) for n, batch in names.items()}
