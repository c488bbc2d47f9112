"""The profiler's measurements against apps of known footprint, on the real Docker engine.

The `load` app holds N MiB, burns N CPU-seconds, sleeps, or exits with a code, as told.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_profiler.runner import RunnerError, RunResult, RunSpec
from sage_profiler.runner_docker import DockerRunner

MiB = 1 << 20


async def run(runner: DockerRunner, image: str, *args: str, **kw) -> RunResult:
    spec = RunSpec(
        image=image,
        args=list(args),
        memory_bytes=kw.pop("memory", 512 * MiB),
        cpus=kw.pop("cpus", 2.0),
        timeout_seconds=kw.pop("timeout", 60),
        **kw,
    )
    return await runner.run(spec)


async def test_peak_memory_is_within_ten_percent_of_what_the_app_holds(
    docker_runner, load_image
) -> None:
    baseline = await run(docker_runner, load_image, "mem=0")
    held = await run(docker_runner, load_image, "mem=128")
    expected = 128 * MiB + baseline.peak_memory_bytes
    assert baseline.exit_code == 0 and held.exit_code == 0
    assert abs(held.peak_memory_bytes - expected) <= 0.10 * expected, (
        held.peak_memory_bytes / MiB,
        baseline.peak_memory_bytes / MiB,
    )


async def test_cpu_seconds_are_within_ten_percent_of_what_the_app_burns(
    docker_runner, load_image
) -> None:
    burned = await run(docker_runner, load_image, "cpu=1.5")
    assert burned.exit_code == 0
    assert burned.cpu_seconds == pytest.approx(1.5, rel=0.10)
    assert burned.cpu_user_seconds + burned.cpu_system_seconds == pytest.approx(
        burned.cpu_seconds, rel=0.10
    )
    assert burned.cpu_user_seconds > burned.cpu_system_seconds


async def test_an_app_over_its_memory_ceiling_is_reported_oom_killed(
    docker_runner, load_image
) -> None:
    killed = await run(docker_runner, load_image, "mem=200", memory=64 * MiB)
    assert killed.oom_killed
    assert killed.exit_code == 137 and not killed.timed_out
    assert killed.peak_memory_bytes <= 64 * MiB + MiB


async def test_an_app_that_hangs_is_killed_at_its_timeout(docker_runner, load_image) -> None:
    hung = await run(docker_runner, load_image, "sleep=120", timeout=2)
    assert hung.timed_out and not hung.oom_killed
    assert hung.exit_code is None
    assert 1.9 <= hung.wall_seconds < 10


async def test_a_failing_command_reports_its_exit_code(docker_runner, load_image) -> None:
    failed = await run(docker_runner, load_image, "exit=3")
    assert failed.exit_code == 3 and not failed.oom_killed and not failed.timed_out
    assert failed.log_tail == ["done cpu=0.000"]


async def test_the_time_series_has_ten_samples_a_second_and_shows_the_load(
    docker_runner, load_image
) -> None:
    res = await run(docker_runner, load_image, "mem=64", "cpu=1", "sleep=1")
    assert res.sample_interval <= 0.1
    assert len(res.samples) >= 0.8 * res.wall_seconds * 10
    assert max(s.memory_bytes for s in res.samples) >= 64 * MiB
    assert max(s.cpu_cores for s in res.samples) >= 0.5
    # the series integrates to the exact total (what the app did between samples is not lost)
    steps = zip(res.samples, res.samples[1:], strict=False)
    integral = sum(b.cpu_cores * (b.t - a.t) for a, b in steps)
    assert integral == pytest.approx(res.cpu_seconds, rel=0.25)
    assert res.samples[-1].cpu_cores < 0.2  # the last second was sleep
    assert res.wall_seconds >= 1.9


async def test_a_cpu_ceiling_throttles_and_stretches_wall_time(docker_runner, load_image) -> None:
    res = await run(docker_runner, load_image, "cpu=0.4", cpus=0.2)
    assert res.wall_seconds >= 1.6  # 0.4 CPU-seconds at a fifth of a core
    assert res.throttled_seconds > 0.3 and res.nr_throttled > 5


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "input.txt").write_text("x")
    tmp_path.chmod(0o755)
    return tmp_path


async def test_the_container_is_locked_down(docker_runner, load_image, data_dir: Path) -> None:
    script = (
        "touch /root-write 2>/dev/null && exit 10; "
        "touch /tmp/ok || exit 11; "
        "touch /data/x 2>/dev/null && exit 12; "
        "test -r /data/input.txt || exit 13; "
        'test "$(ls /sys/class/net)" = lo || exit 14; '
        "grep -q 'CapEff:.*0000000000000000' /proc/self/status || exit 15; "
        "grep -q 'NoNewPrivs:.*1' /proc/self/status || exit 16; "
        "exit 0"
    )
    res = await docker_runner.run(
        RunSpec(
            image=load_image,
            command=["/bin/busybox", "sh", "-c"],
            args=[script],
            data_dir=data_dir,
            timeout_seconds=30,
        )
    )
    assert res.exit_code == 0, res.log_tail


async def test_a_pids_limit_stops_a_fork_bomb(docker_runner, load_image) -> None:
    script = (
        "( i=0; while [ $i -lt 100 ]; do sleep 2 & i=$((i+1)); done; wait ) 2>/dev/null "
        "&& exit 20; exit 0"
    )
    limited = await docker_runner.run(
        RunSpec(
            image=load_image,
            command=["/bin/busybox", "sh", "-c"],
            args=[script],
            pids_limit=32,
            timeout_seconds=30,
        )
    )
    roomy = await docker_runner.run(
        RunSpec(
            image=load_image,
            command=["/bin/busybox", "sh", "-c"],
            args=[script],
            pids_limit=256,
            timeout_seconds=30,
        )
    )
    assert limited.exit_code == 0  # a fork failed inside the subshell
    assert roomy.exit_code == 20  # the same script forks 100 times when allowed to


async def test_images_are_pulled_only_from_the_allowed_registries() -> None:
    runner = DockerRunner(pull_policy="if_missing", registries=("127.0.0.1:5000",))
    try:
        with pytest.raises(RunnerError, match="pulls are allowed only from 127.0.0.1:5000"):
            await runner.prepare("library/not-here-xyz:1", None)
    finally:
        runner.close()
