"""`testing` and `hardware`: one contract, read strictly by the ECR and leniently by the profiler."""

from __future__ import annotations

import os
import subprocess

import pytest
from minio.error import InvalidResponseError, S3Error
from pydantic import ValidationError

from sage_common.appspec import MAX_TEST_COPIES, MAX_TEST_REPETITIONS, Hardware, Testing
from sage_common.procs import alive
from sage_common.s3 import body_code, s3_code


def test_the_ecr_refuses_what_the_profiler_reads_and_reports() -> None:
    over = {"repetitions": MAX_TEST_REPETITIONS + 1, "concurrency": 0, "user": "nobody"}
    with pytest.raises(ValidationError) as refused:
        Testing.model_validate(over)
    assert {e["loc"][0]: e["type"] for e in refused.value.errors()} == {
        "repetitions": "less_than_equal",
        "concurrency": "greater_than_equal",
        "user": "string_pattern_mismatch",
    }
    read = Testing.read(over)
    assert (read.repetitions, read.concurrency, read.user) == (11, 0, "nobody")


def test_the_lenient_reading_takes_older_spellings_and_ignores_unknown_fields() -> None:
    read = Testing.read(
        {
            "arguments": "--fast --n 3",
            "test_data": {"bucket": "camera7", "prefix": "imgs/"},
            "timeout_seconds": "5m",
            "copies": 2,
            "unknown": "ignored",
        }
    )
    assert read.args == ["--fast", "--n", "3"] and read.data == "sage://camera7/imgs/"
    assert read.timeout == 300 and read.concurrency == 2
    with pytest.raises(ValidationError):
        Testing.model_validate({"copies": 2})
    assert Testing.read(None) == Testing()
    # The ECR stores every field of the model, null included; a spelling it set aside as unknown
    # does not override what it validated.
    assert Testing.read({"timeout": None, "timeout_seconds": 99999}).timeout is None


def test_the_schema_states_the_rules_as_json_schema() -> None:
    props = Testing.model_json_schema()["properties"]
    assert props["concurrency"]["maximum"] == MAX_TEST_COPIES
    assert {"type": "number", "exclusiveMinimum": 0, "maximum": 3600} == {
        k: v for k, v in props["timeout"]["anyOf"][0].items() if k != "description"
    }


def test_hardware_read_drops_what_does_not_parse() -> None:
    read = Hardware.read({"min_memory": "lots", "gpu": "required", "extra": 1})
    assert (read.min_memory, read.gpu) == (None, "required")
    assert Hardware.read({"min_memory": "512Mi"}).min_memory == 512 << 20
    with pytest.raises(ValidationError):
        Hardware.model_validate({"min_memory": "lots"})


def test_s3_codes_come_from_errors_and_xml_bodies() -> None:
    error = S3Error(None, "NoSuchKey", "gone", "/b/k", "r", "h")
    assert s3_code(error) == "NoSuchKey"
    text = InvalidResponseError(404, "text/xml", "<Error><Code>NoSuchBucket</Code></Error>")
    assert s3_code(text) == "NoSuchBucket" and s3_code(OSError()) is None
    assert body_code("<html>bad gateway</html>") is None


def test_alive_tells_a_running_pid_from_a_gone_one() -> None:
    assert alive(os.getpid())
    child = subprocess.Popen(["true"])
    child.wait()
    assert not alive(child.pid)
