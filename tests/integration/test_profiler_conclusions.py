"""Concurrency, period and node-fit conclusions on apps whose answers are known in advance."""

from __future__ import annotations

from typing import Any

import pytest

from sage_common.schemas import BuildDone, ProfileDone
from sage_profiler.config import Config, NodeProfile
from sage_profiler.fakes import FakeDataSource
from sage_profiler.runner_docker import DockerRunner
from sage_profiler.service import Profiler, profile

MiB = 1 << 20
GiB = 1 << 30


async def profiled(
    runner: DockerRunner, image: str, testing: dict[str, Any], **cfg: Any
) -> ProfileDone:
    config = Config(**{"memory_limit_bytes": 512 * MiB, "cpu_limit": 2.0, **cfg})
    build = BuildDone(
        app_id="test/load:1.0",
        build_id="b",
        status="success",
        image=image,
        testing={"repetitions": 1, **testing},
    )
    return await profile(Profiler(runner, FakeDataSource(), config), build)


async def test_copies_sharing_one_ceiling_each_take_twice_as_long(
    docker_runner, load_image
) -> None:
    # alone, each gets a quarter core; two share a quarter core: twice the wall time
    done = await profiled(
        docker_runner,
        load_image,
        {"args": ["cpu=0.5"], "concurrency": 2},
        cpu_limit=0.25,
        concurrency_cpus=0.25,
        concurrency_memory_bytes=1 * GiB,
    )
    c = done.concurrency
    assert done.status == "passed", done.reason
    assert c["tested"] and c["all_passed"] and c["passed"] == 2
    assert 1.6 <= c["slowdown"] <= 2.5, c


async def test_copies_that_overflow_the_shared_memory_fail(docker_runner, load_image) -> None:
    done = await profiled(
        docker_runner,
        load_image,
        {"args": ["mem=100", "sleep=1"], "concurrency": 3},
        concurrency_memory_bytes=256 * MiB,
        concurrency_cpus=2.0,
    )
    c = done.concurrency
    assert done.status == "failed"
    assert c["tested"] and not c["all_passed"] and c["passed"] < 3
    assert all("out of memory" in why for why in c["failures"].values())
    assert "copies failed side by side" in done.reason
    assert all(r.passed for r in done.runs)  # alone, every run passed


async def test_period_is_met_when_declared_longer_than_the_run(docker_runner, load_image) -> None:
    done = await profiled(docker_runner, load_image, {"args": ["sleep=1"], "period": "1m"})
    p = done.period
    assert done.status == "passed", done.reason
    assert p["met"] is True and p["shortest_minutes"] == 1
    assert 1.0 <= p["wall_seconds"] < 2.0
    assert p["shortest_seconds"] == pytest.approx(
        (p["wall_seconds"] + p["startup_seconds"]) * 1.2, abs=0.01
    )


async def test_a_period_shorter_than_the_run_fails_the_profile(docker_runner, load_image) -> None:
    done = await profiled(docker_runner, load_image, {"args": ["sleep=1"], "period": 1})
    assert done.status == "failed"
    assert done.period["met"] is False
    assert "declared period of 1 s" in done.reason


async def test_node_fit_counts_copies_by_memory_and_by_cpu(docker_runner, load_image) -> None:
    nodes = [
        NodeProfile(name="one-gig", architecture="linux/amd64", memory_bytes=1 * GiB, cpus=8),
        NodeProfile(name="few-cores", architecture="linux/amd64", memory_bytes=8 * GiB, cpus=1.2),
        NodeProfile(name="arm", architecture="linux/arm64", memory_bytes=8 * GiB, cpus=8),
    ]
    held = await profiled(docker_runner, load_image, {"args": ["mem=300"]}, node_profiles=nodes)
    busy = await profiled(
        docker_runner, load_image, {"args": ["cpu=1"]}, node_profiles=nodes, cpu_limit=0.5
    )
    # 300 MiB held -> about 380 MiB with headroom -> two fit in 1 GiB
    assert held.node_fit["one-gig"]["copies"] == 2
    assert held.node_fit["one-gig"]["limited_by"] == "memory"
    # busy at its half-core ceiling -> a request of about half a core -> two fit on 1.2 cores
    assert 0.4 < busy.recommended["cpu_request"] <= 0.6, busy.recommended
    assert busy.node_fit["few-cores"]["copies"] == 2
    assert busy.node_fit["few-cores"]["limited_by"] == "cpu"
    assert held.node_fit["arm"]["copies"] == 0  # the image has no arm64 variant
