"""Reading the ECR app description's `testing` section."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sage_common.appspec import (
    MAX_TEST_COPIES,
    MAX_TEST_REPETITIONS,
    MAX_TEST_TIMEOUT_SECONDS,
    Hardware,
)
from sage_profiler.config import Config
from sage_profiler.spec import TestData, TestingSpec, ceilings, size_bytes

MiB = 1 << 20


def test_ecr_testing_section_is_read_with_durations_in_seconds() -> None:
    spec = TestingSpec.read(
        {
            "command": ["python3", "main.py"],
            "args": ["--fast"],
            "inputs": {"n": 3, "debug": True, "off": False},
            "data": "sage://camera7/images/",
            "timeout": "5m",
            "period": "90s",
            "repetitions": 2,
            "concurrency": 4,
            "expected_exit_code": 1,
            "unknown": "ignored",
        }
    )
    assert spec.timeout == 300 and spec.period == 90
    assert spec.arguments() == ["python3", "main.py", "--fast", "--n", "3", "--debug"]
    assert spec.entrypoint() is None
    assert spec.test_data() == TestData(bucket="camera7", prefix="images/")
    config = Config()
    assert spec.repetitions_for(config) == 2 and spec.copies_for(config) == 4


def test_sage_input_ids_with_dashes_become_their_flags() -> None:
    spec = TestingSpec.read(
        {"inputs": {"sampling-interval": 5, "out_dir": "/tmp", "-ip": "10.0.0.1", "no-cuda": True}}
    )
    assert spec.arguments() == [
        "--sampling-interval",
        "5",
        "--out_dir",
        "/tmp",
        "-ip",
        "10.0.0.1",
        "--no-cuda",
    ]


def test_mask_entrypoint_makes_the_command_the_entrypoint() -> None:
    spec = TestingSpec.read({"command": "/bin/load mem=1", "mask_entrypoint": True, "args": ["x"]})
    assert spec.entrypoint() == ["/bin/load", "mem=1"]
    assert spec.arguments() == ["x"]


def test_repetitions_and_copies_up_to_the_shared_limits_are_run_as_asked() -> None:
    spec = TestingSpec.read({"repetitions": MAX_TEST_REPETITIONS, "concurrency": MAX_TEST_COPIES})
    assert spec.repetitions_for(Config()) == 10 and spec.copies_for(Config()) == 8
    assert spec.over_limits() == []


def test_asking_beyond_the_limits_runs_at_the_limit_and_says_so() -> None:
    spec = TestingSpec.read({"repetitions": 50, "concurrency": 64, "timeout": 7200})
    assert spec.repetitions_for(Config()) == MAX_TEST_REPETITIONS
    assert spec.copies_for(Config()) == MAX_TEST_COPIES
    assert spec.timeout_for(Config()) == MAX_TEST_TIMEOUT_SECONDS
    assert spec.over_limits() == [
        "testing.timeout asks for 7200 s; the profiler allows at most 3600 s, so runs were "
        "killed after 3600 s",
        "testing.repetitions asks for 50 runs; the profiler runs at most 10, so only 10 ran",
        "testing.concurrency asks for 64 copies side by side; the profiler tests at most 8, "
        "so 64 are not shown to work",
    ]


def test_a_timeout_up_to_the_limit_is_run_as_asked_and_absent_gets_the_default() -> None:
    spec = TestingSpec.read({"timeout": MAX_TEST_TIMEOUT_SECONDS})
    assert spec.timeout_for(Config()) == MAX_TEST_TIMEOUT_SECONDS and spec.over_limits() == []
    assert TestingSpec.read({"timeout": None}).timeout_for(Config(default_timeout_seconds=42)) == 42
    with pytest.raises(ValidationError):
        Config(default_timeout_seconds=MAX_TEST_TIMEOUT_SECONDS + 1)


def test_the_default_repetitions_must_be_within_the_limit() -> None:
    with pytest.raises(ValidationError):
        Config(default_repetitions=MAX_TEST_REPETITIONS + 1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (512 * MiB, 512 * MiB),
        ("512Mi", 512 * MiB),
        ("2G", 2_000_000_000),
        ("1GiB", 1 << 30),
        ("100", 100),
        (None, None),
        ("lots", None),
        (0, None),
        (True, None),
    ],
)
def test_sizes_are_read_as_bytes(value: object, expected: int | None) -> None:
    assert size_bytes(value) == expected


def test_min_memory_raises_the_ceiling_up_to_the_maximum() -> None:
    config = Config(memory_limit_bytes=256 * MiB, max_memory_limit_bytes=1024 * MiB, cpu_limit=1.5)
    plain = ceilings(Hardware.read(None), config)
    assert (plain.memory_bytes, plain.memory_from, plain.cpus) == (256 * MiB, "default", 1.5)
    small = ceilings(Hardware.read({"min_memory": 64 * MiB}), config)
    assert (small.memory_bytes, small.memory_from) == (256 * MiB, "default")
    assert small.min_memory_bytes == 64 * MiB
    raised = ceilings(Hardware.read({"min_memory": 600 * MiB, "gpu": "none"}), config)
    assert (raised.memory_bytes, raised.memory_from) == (600 * MiB, "hardware.min_memory")
    capped = ceilings(Hardware.read({"min_memory": "4Gi"}), config)
    assert (capped.memory_bytes, capped.memory_from) == (1024 * MiB, "maximum")
    assert (capped.min_memory_bytes, capped.max_memory_bytes) == (4 << 30, 1024 * MiB)


def test_no_description_means_the_image_as_it_is_with_defaults() -> None:
    config = Config(default_repetitions=3, default_timeout_seconds=120)
    spec = TestingSpec.read(None)
    assert spec.arguments() == [] and spec.entrypoint() is None and spec.test_data() is None
    assert spec.repetitions_for(config) == 3 and spec.timeout_for(config) == 120
    assert spec.copies_for(config) == 1 and spec.period is None


def test_the_operator_cannot_configure_root_or_a_named_user_as_the_default() -> None:
    assert Config().run_as_user == "65534:65534"
    for bad in ("0:0", "root", "1000", "nobody:nogroup"):
        with pytest.raises(ValidationError):
            Config(run_as_user=bad)
