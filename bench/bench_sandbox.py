"""What the build sandbox costs: a normal two-architecture build, sandboxed against today's.

Both sides run the builder's own buildah backend on the same app (amd64 native, arm64 under
qemu), each build followed by the push of its index to a loopback registry:
- sandboxed: what the service runs (chroot isolation inside `Sandbox`: its own network, PID, IPC,
  UTS and mount namespaces, cgroups, dropped capabilities, the disk watch);
- today's: the builder before the sandbox (`--isolation oci --network none`, no wrapper).
Each pair changes the source first, so neither side finds the RUN step cached. Target <= 1.3.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

PAIRS = 2
# A normal app's RUN step: some CPU and a layer of data (under qemu for arm64 too).
WORK = (
    "echo working; i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; "
    "dd if=/dev/urandom of=/data bs=1M count=16 2>/dev/null; echo done"
)


async def main() -> list[dict]:
    from sage_builder.buildah import BuildahBackend
    from sage_builder.cache import LayerCache
    from sage_builder.models import BuildRequest, Platform
    from sage_builder.source import locate
    from tests.support.builder import RegistryServer, scratch_app

    tmp = Path(tempfile.mkdtemp(prefix="sage-bench-sandbox-"))
    registry = RegistryServer(tmp / "registry", realm=None, cert=None)
    try:
        await asyncio.to_thread(registry.start)
        app = tmp / "app"
        scratch_app(app, WORK, steps=("COPY stamp /stamp",), extra={"stamp": "0"})
        sides = {
            "sandboxed": BuildahBackend(isolation="chroot"),
            "today": BuildahBackend(isolation="oci", sandbox=False),
        }
        cache = LayerCache(tmp / "cache", 10**11)
        platforms = (Platform.parse("linux/amd64"), Platform.parse("linux/arm64"))

        async def two_arch_build(side: str, n: int) -> float:
            (app / "stamp").write_text(f"{side}-{n}")
            backend = sides[side]
            request = BuildRequest(
                build_id=f"{side}-{n}",
                app_id=f"bench/{side}:1.0",
                url=f"bench://{side}",
                branch=None,
                tag=None,
                commit=None,
                directory=".",
                dockerfile="Dockerfile",
                platforms=platforms,
            )
            checkout = locate(app, "HEAD", ".", "Dockerfile")
            started = time.perf_counter()
            async with cache.use(request.url, "bench") as store:
                images = [
                    await backend.build(request, checkout, p, store, lambda _: None)
                    for p in platforms
                ]
                destination = f"{registry.address}/{request.repository}:{request.version}"
                await backend.push(request, images, destination, store, lambda _: None, None)
                elapsed = time.perf_counter() - started
                await backend.release(request, images, store)
            return elapsed

        for side in sides:  # warm both (storage driver probe, qemu, the registry)
            await two_arch_build(side, 0)
        times: dict[str, list[float]] = {side: [] for side in sides}
        for n in range(1, PAIRS + 1):
            for side in sides:
                times[side].append(await two_arch_build(side, n))
        sandboxed, today = (statistics.median(times[s]) for s in ("sandboxed", "today"))
        return [
            {
                "name": "builder: two-arch build+push, sandboxed (vs today's)",
                "value": sandboxed,
                "unit": "s",
                "baseline": today,
                "ratio": sandboxed / today,
                "target": "<= 1.3",
            }
        ]
    finally:
        await asyncio.to_thread(registry.stop)
        await asyncio.to_thread(shutil.rmtree, tmp, True)
