"""The profiling use case over a scripted runner: what is run, and what is concluded."""

from __future__ import annotations

import pytest

from sage_common.schemas import ArchImage, BuildDone, ProfileDone
from sage_profiler.config import Config, NodeProfile
from sage_profiler.fakes import FakeDataSource, FakeRunner, result
from sage_profiler.runner import RunnerError, RunnerUnavailable, RunResult, RunSpec
from sage_profiler.service import Profiler, image_ref, profile, profile_id_for

MiB = 1 << 20
GiB = 1 << 30


def build(testing: dict | None = None, images: list[ArchImage] | None = None, **kw) -> BuildDone:
    return BuildDone(
        app_id="ns/app:1.0.0",
        build_id=kw.pop("build_id", "b-1"),
        status="success",
        image="127.0.0.1:5000/ns/app:1.0.0",
        images=images or [],
        testing=testing,
        **kw,
    )


def config(**kw) -> Config:
    nodes = [NodeProfile(name="small", architecture="linux/amd64", memory_bytes=1 * GiB, cpus=2)]
    return Config(node_profiles=kw.pop("node_profiles", nodes), **kw)


async def run(
    runner: FakeRunner, b: BuildDone, cfg: Config | None = None, data: FakeDataSource | None = None
) -> ProfileDone:
    return await profile(Profiler(runner, data or FakeDataSource(), cfg or config()), b)


async def test_a_passing_app_gets_limits_period_and_node_fit() -> None:
    runner = FakeRunner(lambda spec: result(peak=100 * MiB, cpu=0.5, wall=1.0, startup=0.5))
    done = await run(runner, build({"repetitions": 3, "period": 60}))
    assert done.status == "passed" and done.reason is None
    assert len(done.runs) == 3 and all(r.passed for r in done.runs)
    assert done.recommended["memory_limit_bytes"] == 125 * MiB  # 25 % headroom
    assert done.recommended["memory_request_bytes"] == 100 * MiB
    assert done.recommended["cpu_request"] == 0.5
    assert done.period["shortest_seconds"] == 1.8 and done.period["met"] is True
    assert done.node_fit["small"]["copies"] == 4  # 2 cpus / 0.5, memory would allow 8
    assert done.node_fit["small"]["limited_by"] == "cpu"
    assert done.profile_id == profile_id_for("b-1")
    assert done.series and done.series[0].architecture == "linux/amd64"


async def test_each_failure_is_named_in_the_reason() -> None:
    answers = iter(
        [
            result(),
            result(exit_code=3),
            result(exit_code=137, oom=True),
            result(exit_code=None, timed_out=True),
        ]
    )
    runner = FakeRunner(lambda spec: next(answers))
    done = await run(runner, build({"repetitions": 4, "timeout": 30}))
    assert done.status == "failed"
    assert "repetition 2: exited 3, expected 0" in done.reason
    assert "repetition 3: killed out of memory" in done.reason
    assert "repetition 4: timed out after 30 s" in done.reason
    assert [r.passed for r in done.runs] == [True, False, False, False]
    assert done.recommended["basis"] == "1 passing native run(s)"


async def test_the_expected_exit_code_is_what_passes() -> None:
    done = await run(FakeRunner(lambda s: result(exit_code=2)), build({"expected_exit_code": 2}))
    assert done.status == "passed"


async def test_declared_copies_run_side_by_side_under_the_shared_ceiling() -> None:
    def script(spec: RunSpec):
        return result(wall=1.0)

    runner = FakeRunner(script)
    cfg = config(concurrency_memory_bytes=3 * GiB, concurrency_cpus=1.5)
    done = await run(runner, build({"concurrency": 3, "repetitions": 1}), cfg)
    specs, memory, cpus = runner.together[0]
    assert len(specs) == 3 and memory == 3 * GiB and cpus == 1.5
    assert done.concurrency["tested"] and done.concurrency["all_passed"]
    assert done.concurrency["slowdown"] == 1.0


async def test_a_copy_that_fails_side_by_side_fails_the_profile() -> None:
    calls = iter([result(wall=1.0), result(wall=2.0), result(exit_code=137, oom=True)])
    done = await run(FakeRunner(lambda s: next(calls)), build({"concurrency": 2, "repetitions": 1}))
    assert done.status == "failed"
    assert done.concurrency["passed"] == 1 and not done.concurrency["all_passed"]
    assert "1 of 2 copies failed side by side" in done.reason
    assert done.concurrency["slowdown"] == 2.0


async def test_a_period_shorter_than_the_app_needs_fails() -> None:
    done = await run(FakeRunner(lambda s: result(wall=10.0, startup=0.5)), build({"period": "10s"}))
    assert done.status == "failed"
    assert done.period["met"] is False and done.period["shortest_minutes"] == 1
    assert "declared period of 10 s" in done.reason


async def test_emulated_architectures_are_marked_and_not_used_for_limits() -> None:
    images = [ArchImage(architecture="linux/arm64", digest="sha256:" + "a" * 64)]
    runner = FakeRunner(emulated={"linux/arm64"})
    done = await run(runner, build({"period": 60}, images))
    assert done.status == "passed"
    assert all(r.emulated for r in done.runs)
    assert "memory_limit_bytes" not in done.recommended
    assert done.period["emulated"] is True
    assert runner.prepared == [("127.0.0.1:5000/ns/app@sha256:" + "a" * 64, "linux/arm64")]
    assert runner.runs[0].platform == "linux/arm64"


async def test_native_runs_come_first_and_emulated_ones_do_not_count_for_limits() -> None:
    images = [
        ArchImage(architecture="linux/arm64", digest="sha256:" + "b" * 64),
        ArchImage(architecture="linux/amd64", digest="sha256:" + "c" * 64),
    ]
    runner = FakeRunner(
        lambda s: result(peak=(300 if s.platform else 100) * MiB), emulated={"linux/arm64"}
    )
    done = await run(runner, build({"repetitions": 1}, images))
    assert [(r.architecture, r.emulated) for r in done.runs] == [
        ("linux/amd64", False),
        ("linux/arm64", True),
    ]
    assert done.recommended["memory_request_bytes"] == 100 * MiB


async def test_an_architecture_nothing_here_can_run_fails_with_the_reason() -> None:
    images = [ArchImage(architecture="linux/riscv64", digest="sha256:" + "d" * 64)]
    done = await run(FakeRunner(), build(None, images))
    assert done.status == "failed"
    assert done.reason == "no architecture of the image can run here"
    assert done.architectures[0].ran is False


async def test_an_image_that_cannot_be_pulled_fails_the_profile() -> None:
    runner = FakeRunner(missing={"127.0.0.1:5000/ns/app:1.0.0"})
    done = await run(runner, build())
    assert done.status == "failed" and "cannot pull" in done.reason
    assert runner.runs == []


async def test_test_data_is_mounted_read_only_and_missing_data_fails() -> None:
    seen: list[RunSpec] = []

    def script(spec: RunSpec):
        seen.append(spec)
        assert spec.data_dir is not None and (spec.data_dir / "a.txt").read_bytes() == b"hello"
        return result()

    data = FakeDataSource({"camera7": {"imgs/a.txt": b"hello"}})
    done = await run(FakeRunner(script), build({"data": "sage://camera7/imgs/"}), data=data)
    assert done.status == "passed"
    assert seen[0].env["SAGE_TEST_DATA"] == "/data" and seen[0].data_mount == "/data"
    assert not seen[0].data_dir.exists()  # removed afterwards
    missing = await run(FakeRunner(), build({"data": "sage://nope/"}), data=data)
    assert missing.status == "failed" and missing.reason.startswith("test data:")


async def test_containers_get_the_configured_ceilings() -> None:
    runner = FakeRunner()
    cfg = config(memory_limit_bytes=512 * MiB, cpu_limit=1.5, pids_limit=64, tmpfs_bytes=8 * MiB)
    await run(
        runner,
        build({"command": ["/bin/app"], "mask_entrypoint": True, "args": ["x"], "repetitions": 1}),
        cfg,
    )
    spec = runner.runs[0]
    assert (spec.memory_bytes, spec.cpus, spec.pids_limit, spec.tmpfs_bytes) == (
        512 * MiB,
        1.5,
        64,
        8 * MiB,
    )
    assert spec.command == ["/bin/app"] and spec.args == ["x"]
    # a native run names its architecture (the Kubernetes runner picks nodes by it), no emulation
    assert spec.platform is None and spec.architecture == "linux/amd64"


async def test_declared_min_memory_raises_the_ceiling_and_the_profile_says_so() -> None:
    runner = FakeRunner()
    cfg = config(memory_limit_bytes=256 * MiB, max_memory_limit_bytes=1 * GiB)
    done = await run(
        runner, build({"repetitions": 1}, hardware={"min_memory": 600 * MiB, "gpu": "none"}), cfg
    )
    assert runner.runs[0].memory_bytes == 600 * MiB
    assert done.status == "passed"
    assert done.ceilings == {
        "memory_bytes": 600 * MiB,
        "cpus": 2.0,
        "memory_from": "hardware.min_memory",
        "min_memory_bytes": 600 * MiB,
        "default_memory_bytes": 256 * MiB,
        "max_memory_bytes": 1 * GiB,
    }


async def test_min_memory_below_the_default_leaves_the_ceiling_as_configured() -> None:
    runner = FakeRunner()
    cfg = config(memory_limit_bytes=256 * MiB)
    done = await run(runner, build({"repetitions": 1}, hardware={"min_memory": 64 * MiB}), cfg)
    assert runner.runs[0].memory_bytes == 256 * MiB
    assert done.ceilings["memory_from"] == "default"
    plain = await run(FakeRunner(), build({"repetitions": 1}), cfg)
    assert (
        plain.ceilings["memory_bytes"] == 256 * MiB and plain.ceilings["min_memory_bytes"] is None
    )


async def test_min_memory_above_the_maximum_gets_the_maximum_and_an_oom_says_why() -> None:
    runner = FakeRunner(lambda spec: result(exit_code=137, oom=True))
    cfg = config(memory_limit_bytes=256 * MiB, max_memory_limit_bytes=512 * MiB)
    done = await run(runner, build({"repetitions": 1}, hardware={"min_memory": 2 * GiB}), cfg)
    assert runner.runs[0].memory_bytes == 512 * MiB
    assert done.ceilings["memory_from"] == "maximum"
    assert done.status == "failed"
    assert "killed out of memory at the 512 MiB ceiling" in done.reason
    assert (
        f"hardware.min_memory asks for {2 * GiB} bytes; the profiler gives at most" in done.reason
    )


async def test_repetitions_and_copies_beyond_the_limits_fail_the_profile_with_the_reason() -> None:
    runner = FakeRunner()
    done = await run(runner, build({"repetitions": 25, "concurrency": 20}))
    assert len(runner.runs) == 10  # run at the limit: the figures still help the scientist
    assert len(runner.together[0][0]) == 8
    assert done.status == "failed"
    assert "testing.repetitions asks for 25 runs; the profiler runs at most 10" in done.reason
    assert "testing.concurrency asks for 20 copies side by side" in done.reason
    assert done.concurrency["copies"] == 8 and done.concurrency["all_passed"] is True


async def test_a_timeout_beyond_the_limit_fails_the_profile_and_runs_at_the_limit() -> None:
    runner = FakeRunner()
    done = await run(runner, build({"repetitions": 1, "timeout": 7200}))
    assert [spec.timeout_seconds for spec in runner.runs] == [3600]
    assert done.status == "failed"
    assert "testing.timeout asks for 7200 s; the profiler allows at most 3600 s" in done.reason


async def test_no_timeout_given_means_the_configured_default() -> None:
    runner = FakeRunner()
    done = await run(runner, build({"repetitions": 1}), config(default_timeout_seconds=42))
    assert [spec.timeout_seconds for spec in runner.runs] == [42] and done.status == "passed"


async def test_runs_carry_how_they_were_measured_and_unmeasured_ones_set_no_limits() -> None:
    def unmeasured(spec: RunSpec) -> RunResult:
        r = result(peak=0, cpu=0.0)
        r.measured_by = "none"
        return r

    done = await run(FakeRunner(), build({"repetitions": 1}))
    assert [r.measured_by for r in done.runs] == ["cgroup"]
    done = await run(FakeRunner(unmeasured), build({"repetitions": 2}))
    assert [r.measured_by for r in done.runs] == ["none", "none"]
    assert done.status == "passed" and "memory_limit_bytes" not in done.recommended
    assert "2 unmeasured run(s) left out" in done.recommended["basis"]
    assert "memory_limit_bytes" not in done.model_dump(mode="json")["recommended"]


async def test_no_repetitions_given_means_the_configured_default() -> None:
    runner = FakeRunner()
    await run(runner, build({"repetitions": None}), config(default_repetitions=3))
    assert len(runner.runs) == 3


async def test_gpu_is_requested_only_where_the_runner_has_one() -> None:
    with_gpu, without = FakeRunner(gpu=True), FakeRunner(gpu=False)
    await run(with_gpu, build({"gpu": True, "repetitions": 1}))
    await run(without, build({"gpu": True, "repetitions": 1}))
    assert with_gpu.runs[0].gpu and not without.runs[0].gpu


def test_image_reference_per_architecture_uses_the_digest() -> None:
    assert image_ref("127.0.0.1:5000/ns/app:1.0", "sha256:x") == "127.0.0.1:5000/ns/app@sha256:x"
    assert image_ref("localhost:5000/ns/app", "sha256:x") == "localhost:5000/ns/app@sha256:x"
    assert image_ref("ns/app:1.0", "") == "ns/app:1.0"


async def test_an_image_the_engine_cannot_run_fails_but_an_engine_outage_is_retried() -> None:
    def refuse(spec: RunSpec):
        raise RunnerError("image is for another platform")

    done = await run(FakeRunner(refuse), build())
    assert done.status == "failed" and "another platform" in done.reason

    def down(spec: RunSpec):
        raise RunnerUnavailable("the Docker engine is unreachable")

    with pytest.raises(RunnerUnavailable):
        await run(FakeRunner(down), build())


async def test_runs_are_unprivileged_unless_the_test_asks_for_another_non_root_user() -> None:
    runner = FakeRunner()
    await run(runner, build({"repetitions": 1}))
    await run(runner, build({"repetitions": 1, "user": "1000"}, build_id="b-2"))
    assert [r.user for r in runner.runs] == ["65534:65534", "1000:1000"]


async def test_a_test_asking_for_root_fails_unless_the_operator_allows_it() -> None:
    runner = FakeRunner()
    refused = await run(runner, build({"user": "root"}))
    assert refused.status == "failed" and runner.runs == []
    assert "testing.user asks to run as root" in refused.reason
    assert "SAGE_PROFILER_ALLOW_ROOT_TESTS" in refused.reason
    assert [(a.ran, a.reason) for a in refused.architectures] == [(False, refused.reason)]
    allowed = await run(
        runner, build({"user": "root", "repetitions": 1}), config(allow_root_tests=True)
    )
    assert allowed.status == "passed" and [r.user for r in runner.runs] == ["0:0"]


async def test_a_named_user_is_refused_as_unprovably_non_root() -> None:
    runner = FakeRunner()
    done = await run(runner, build({"user": "postgres"}))
    assert done.status == "failed" and runner.runs == []
    assert "neither root nor a numeric uid" in done.reason
