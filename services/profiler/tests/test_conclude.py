"""Conclusions from figures: CPU peaks from the series, node fit, limits."""

from __future__ import annotations

import pytest

from sage_profiler.conclude import node_fit, peak_cores, recommend
from sage_profiler.config import Config, NodeProfile
from sage_profiler.fakes import result
from sage_profiler.runner import Sample

GiB = 1 << 30
MiB = 1 << 20


def test_peak_cores_is_the_busiest_second_not_the_average() -> None:
    run = result(wall=4.0, cpu=1.0)
    run.samples = [
        Sample(t=i / 10, memory_bytes=0, cpu_cores=2.0 if 10 <= i < 20 else 0.0) for i in range(40)
    ]
    assert run.cpu_cores == pytest.approx(0.25)
    assert peak_cores(run) == pytest.approx(2.0)


def test_limits_take_the_worst_run_with_headroom() -> None:
    runs = [result(peak=100 * MiB, cpu=0.5), result(peak=200 * MiB, cpu=0.5)]
    rec = recommend(runs, Config(memory_headroom=0.5, cpu_headroom=0.0))
    assert rec["memory_limit_bytes"] == 300 * MiB
    assert rec["memory_request_bytes"] == 200 * MiB
    assert rec["cpu_limit"] == 0.5


def test_no_passing_run_derives_no_limits() -> None:
    assert "memory_limit_bytes" not in recommend([], Config())


def test_unmeasured_runs_derive_no_limits_and_the_basis_says_so() -> None:
    unmeasured = result(peak=0, cpu=0.0)
    unmeasured.measured_by = "none"
    rec = recommend([unmeasured], Config())
    assert "memory_limit_bytes" not in rec and "cpu_limit" not in rec
    assert "1 unmeasured run(s) left out" in rec["basis"]
    measured = result(peak=100 * MiB, cpu=0.5)
    rec = recommend([measured, unmeasured], Config(memory_headroom=0.0))
    assert rec["memory_limit_bytes"] == 100 * MiB
    assert rec["basis"] == "1 passing native run(s); 1 unmeasured run(s) left out"


def test_node_fit_respects_reserve_architecture_and_gpu() -> None:
    nodes = [
        NodeProfile(
            name="jetson",
            architecture="linux/arm64",
            memory_bytes=8 * GiB,
            cpus=6,
            gpu=True,
            reserved_memory_bytes=1 * GiB,
            reserved_cpus=0.5,
        ),
        NodeProfile(name="pi", architecture="linux/arm64", memory_bytes=4 * GiB, cpus=4),
        NodeProfile(name="pc", architecture="linux/amd64", memory_bytes=4 * GiB, cpus=4),
    ]
    rec = {"memory_limit_bytes": 1 * GiB, "cpu_request": 0.5}
    fit = node_fit(rec, nodes, ["linux/arm64"], gpu=False)
    assert fit["jetson"]["copies"] == 7 and fit["jetson"]["limited_by"] == "memory"
    assert fit["pi"]["copies"] == 4
    assert fit["pc"] == {"architecture": "linux/amd64", "copies": 0, "limited_by": "architecture"}
    assert node_fit(rec, nodes, ["linux/arm64"], gpu=True)["pi"]["limited_by"] == "gpu"
    busy = node_fit(
        {"memory_limit_bytes": 100 * MiB, "cpu_request": 1.5}, nodes, ["linux/arm64"], gpu=False
    )
    assert busy["pi"]["copies"] == 2 and busy["pi"]["limited_by"] == "cpu"
