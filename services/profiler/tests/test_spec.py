"""Reading the ECR app description's `testing` section."""

from __future__ import annotations

from sage_profiler.config import Config
from sage_profiler.spec import TestData, parse_testing


def test_ecr_testing_section_is_read_with_durations_in_seconds() -> None:
    spec = parse_testing(
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


def test_mask_entrypoint_makes_the_command_the_entrypoint() -> None:
    spec = parse_testing({"command": "/bin/load mem=1", "mask_entrypoint": True, "args": ["x"]})
    assert spec.entrypoint() == ["/bin/load", "mem=1"]
    assert spec.arguments() == ["x"]


def test_requests_are_clamped_to_configuration() -> None:
    config = Config(max_repetitions=5, max_copies=3, max_timeout_seconds=60)
    spec = parse_testing({"repetitions": 50, "concurrency": 64, "timeout": 3600})
    assert spec.repetitions_for(config) == 5
    assert spec.copies_for(config) == 3
    assert spec.timeout_for(config) == 60


def test_no_description_means_the_image_as_it_is_with_defaults() -> None:
    config = Config(default_repetitions=3, default_timeout_seconds=120)
    spec = parse_testing(None)
    assert spec.arguments() == [] and spec.entrypoint() is None and spec.test_data() is None
    assert spec.repetitions_for(config) == 3 and spec.timeout_for(config) == 120
    assert spec.copies_for(config) == 1 and spec.period is None
