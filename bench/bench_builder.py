"""The builder's own cost, and what its layer cache saves.

1. `app.submitted` -> `build.done` through the running service (bus, claim, git fetch, buildah
   build, index push, read-back, log upload, outbox) against the same work done directly: `git
   clone --depth 1`, then the same backend's `build` + `push` (same registry, same credentials).
   Each pair changes the source first, so neither side finds the expensive step cached.
   Target <= 1.2.
2. The second build of unchanged source through the service against the first one. Target >= 5.

Everything real and on loopback: the run's own Postgres database, RabbitMQ, the auth service
issuing registry tokens, Debian's docker-registry trusting them, `git daemon`, an S3 server.
The apps are amd64 only (arm64 under qemu costs the same on both sides and would only add time).
"""

from __future__ import annotations

import asyncio
import statistics
import time

PAIRS = 3
# The expensive step a real app has (compiling, installing packages): some seconds of CPU and a
# layer of data. Real apps take minutes here, so the cache's gain below is an understatement.
WORK = (
    "echo working; i=0; while [ $i -lt 6000000 ]; do i=$((i+1)); done; "
    "dd if=/dev/urandom of=/data bs=1M count=64 2>/dev/null; echo done"
)


def _rows(pipeline: list[float], direct: list[float], first: float, second: float) -> list[dict]:
    p, d = statistics.median(pipeline), statistics.median(direct)
    return [
        {
            "name": "builder: app.submitted -> build.done (vs direct build+push)",
            "value": p,
            "unit": "s",
            "baseline": d,
            "ratio": p / d,
            "target": "<= 1.2",
        },
        {
            "name": "builder: second build of unchanged source (first / second)",
            "value": second,
            "unit": "s",
            "baseline": first,
            "ratio": first / second,
            "target": ">= 5",
        },
    ]


async def main() -> list[dict]:
    from bench._builder_stack import AMQP_URL, builder_stack
    from sage_builder.app import make_builder
    from sage_builder.models import BuildRequest, Platform
    from sage_builder.registry import write_authfile
    from sage_builder.source import locate
    from tests.support.builder import (
        Harness,
        commit_all,
        git,
        running_builder,
        scratch_app,
    )

    async with builder_stack("builder") as stack:
        config, tmp, registry, gits = stack.config, stack.tmp, stack.registry, stack.gits
        work = tmp / "app"
        scratch_app(work, WORK, steps=("COPY stamp /stamp",), extra={"stamp": "0"})
        commit_all(work, "bench app")
        gits.publish("app", work)

        def change_source(n: int) -> None:
            (work / "stamp").write_text(str(n))
            commit_all(work, f"change {n}")
            gits.publish("app", work)

        direct_builder = make_builder(config)
        backend, cache = direct_builder.backend, direct_builder.cache
        creds = direct_builder.creds
        assert creds is not None
        authfile = write_authfile(tmp / "direct-auth", registry.address, creds)

        async def direct(n: int) -> float:
            await asyncio.to_thread(change_source, n)
            checkout_dir = tmp / f"direct-{n}"
            started = time.perf_counter()
            await asyncio.to_thread(
                git, tmp, "clone", "-q", "--depth", "1", gits.url("app"), str(checkout_dir)
            )
            request = BuildRequest(
                build_id=f"direct-{n}",
                app_id="bench/direct:1.0",
                url=gits.url("app"),
                branch=None,
                tag=None,
                commit=None,
                directory=".",
                dockerfile="Dockerfile",
                platforms=(Platform.parse("linux/amd64"),),
            )
            checkout = locate(checkout_dir, "HEAD", ".", "Dockerfile")
            destination = f"{registry.address}/bench/direct:1.0"
            async with cache.use(request.url) as store:
                image = await backend.build(
                    request, checkout, request.platforms[0], store, lambda _: None
                )
                await backend.push(request, [image], destination, store, lambda _: None, authfile)
            elapsed = time.perf_counter() - started
            async with cache.use(request.url) as store:
                await backend.release(request, [image], store)
            return elapsed

        async with (
            running_builder(config),
            Harness.open(AMQP_URL, config.exchange, gits.url) as harness,
        ):

            async def through_service(n: int | None) -> float:
                if n is not None:
                    await asyncio.to_thread(change_source, n)
                started = time.perf_counter()
                build_id = await harness.submit("bench/app:1.0", "app")
                done = await harness.events.done(build_id, within=600)
                elapsed = time.perf_counter() - started
                if done.status != "success":
                    raise RuntimeError(f"bench build failed: {done.error_class}: {done.error}")
                return elapsed

            await direct(0)  # warm both paths once (buildah, registry, token service)
            await through_service(1)
            pipeline: list[float] = []
            plain: list[float] = []
            for i in range(PAIRS):
                plain.append(await direct(10 + 2 * i))
                pipeline.append(await through_service(11 + 2 * i))
            first = await through_service(100)
            second = await through_service(None)
        return _rows(pipeline, plain, first, second)
