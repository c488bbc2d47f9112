"""The cgroup readers on files laid out as the kernel lays them out (v2 is not mounted here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_profiler.cgroup import CgroupV1, CgroupV2, detect, parse_flat_keyed


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def v2(tmp_path: Path) -> Path:
    write(tmp_path / "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
    write(tmp_path / "cgroup.subtree_control", "")
    run = tmp_path / "sage-profiler/r1/c0"
    write(run / "memory.peak", "73400320\n")
    write(run / "memory.current", "1048576\n")
    write(run / "memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
    write(
        run / "cpu.stat",
        "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n"
        "nr_periods 30\nnr_throttled 7\nthrottled_usec 350000\n",
    )
    write(run / "abc123/cgroup.procs", "41\n42\n")
    write(run / "cgroup.procs", "")
    return tmp_path


def test_v2_is_detected_by_its_unified_root(v2: Path, tmp_path: Path) -> None:
    assert isinstance(detect(v2), CgroupV2)
    assert isinstance(detect(tmp_path / "nothing"), CgroupV1)


def test_v2_totals_come_from_memory_peak_and_cpu_stat(v2: Path) -> None:
    totals = CgroupV2(v2).totals("/sage-profiler/r1/c0")
    assert totals.peak_memory_bytes == 73400320
    assert totals.peak_exact
    assert totals.cpu_seconds == pytest.approx(2.5)
    assert totals.cpu_user_seconds == pytest.approx(2.0)
    assert totals.cpu_system_seconds == pytest.approx(0.5)
    assert totals.throttled_seconds == pytest.approx(0.35)
    assert totals.nr_throttled == 7
    assert totals.oom_kills == 1


def test_v2_without_memory_peak_falls_back_and_says_so(v2: Path) -> None:
    (v2 / "sage-profiler/r1/c0/memory.peak").unlink()
    totals = CgroupV2(v2).totals("sage-profiler/r1/c0")
    assert totals.peak_memory_bytes == 1048576
    assert not totals.peak_exact


def test_v2_reading_and_processes(v2: Path) -> None:
    cg = CgroupV2(v2)
    reading = cg.reading("sage-profiler/r1/c0")
    assert reading.memory_bytes == 1048576
    assert reading.cpu_seconds == pytest.approx(2.5)
    assert sorted(cg.procs("sage-profiler/r1/c0")) == [41, 42]


def test_v2_create_enables_controllers_and_writes_ceilings(v2: Path) -> None:
    cg = CgroupV2(v2)
    cg.create("sage-profiler/group", memory_bytes=512 << 20, cpus=1.5)
    group = v2 / "sage-profiler/group"
    assert (group / "memory.max").read_text() == str(512 << 20)
    assert (group / "cpu.max").read_text() == "150000 100000"
    for level in (v2, v2 / "sage-profiler", group):
        assert (level / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"


def test_v1_totals_read_each_controller(tmp_path: Path) -> None:
    rel = "sage-profiler/r1/c0"
    write(tmp_path / "memory" / rel / "memory.max_usage_in_bytes", "52428800\n")
    write(tmp_path / "memory" / rel / "memory.usage_in_bytes", "4096\n")
    write(
        tmp_path / "memory" / rel / "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    )
    write(tmp_path / "cpuacct" / rel / "cpuacct.usage", "1500000000\n")
    write(tmp_path / "cpuacct" / rel / "cpuacct.usage_user", "1200000000\n")
    write(tmp_path / "cpuacct" / rel / "cpuacct.usage_sys", "300000000\n")
    write(
        tmp_path / "cpu" / rel / "cpu.stat",
        "nr_periods 10\nnr_throttled 3\nthrottled_time 250000000\n",
    )
    cg = CgroupV1(tmp_path)
    totals = cg.totals(rel)
    assert totals.peak_memory_bytes == 52428800
    assert totals.cpu_seconds == pytest.approx(1.5)
    assert totals.cpu_user_seconds == pytest.approx(1.2)
    assert totals.cpu_system_seconds == pytest.approx(0.3)
    assert totals.throttled_seconds == pytest.approx(0.25)
    assert totals.nr_throttled == 3
    assert totals.oom_kills == 2
    assert cg.reading(rel).memory_bytes == 4096


def test_v1_older_kernels_report_cpu_split_in_ticks(tmp_path: Path) -> None:
    rel = "p/r"
    write(tmp_path / "memory" / rel / "memory.max_usage_in_bytes", "1\n")
    write(tmp_path / "memory" / rel / "memory.oom_control", "oom_kill_disable 0\n")
    write(tmp_path / "cpuacct" / rel / "cpuacct.usage", "1000000000\n")
    write(tmp_path / "cpuacct" / rel / "cpuacct.stat", "user 80\nsystem 20\n")
    totals = CgroupV1(tmp_path).totals(rel)
    assert totals.cpu_user_seconds + totals.cpu_system_seconds == pytest.approx(100 / 100, rel=0.5)
    assert totals.nr_throttled == 0


def test_remove_takes_out_the_whole_run_tree(v2: Path) -> None:
    cg = CgroupV2(v2)
    (v2 / "sage-profiler/r2/c0/inner").mkdir(parents=True)
    cg.remove("sage-profiler/r2")
    assert not (v2 / "sage-profiler/r2").exists()


def test_flat_keyed_ignores_malformed_lines() -> None:
    assert parse_flat_keyed("a 1\nbroken\nb x\nc -2\n") == {"a": 1, "c": -2}


def test_v2_create_in_a_delegated_subtree_leaves_the_levels_above_alone(v2: Path) -> None:
    """A non-root profiler owns only its subtree: where the root already enables the controllers
    it writes nothing there (a write would be refused)."""
    (v2 / "cgroup.subtree_control").write_text("cpu io memory pids")
    (v2 / "cgroup.subtree_control").chmod(0o444)
    try:
        CgroupV2(v2).create("sage-profiler/group", memory_bytes=64 << 20)
    finally:
        (v2 / "cgroup.subtree_control").chmod(0o644)
    assert (v2 / "cgroup.subtree_control").read_text() == "cpu io memory pids"
    assert (v2 / "sage-profiler/group/memory.max").read_text() == str(64 << 20)
