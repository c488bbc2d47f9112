"""The app's `testing` and `hardware` from `build.done`, and what the profiler makes of them.

The models are `sage_common.appspec`'s, which the ECR validates strictly; here they are read
leniently (`Testing.read`), and what asks beyond the ECR's limits runs at the limit and is
reported (`over_limits`), never cut down without a word.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, field_validator

from sage_common.appspec import (
    MAX_TEST_COPIES,
    MAX_TEST_REPETITIONS,
    MAX_TEST_TIMEOUT_SECONDS,
    USER_PATTERN,
    Hardware,
    Testing,
    parse_bytes,
)
from sage_common.schemas import Ceilings

from .config import Config


class TestData(BaseModel):
    """An object store bucket (and prefix) mounted read-only into the container."""

    __test__ = False  # not a pytest test class

    bucket: str
    prefix: str = ""


class TestingSpec(Testing):
    """`testing` (durations in seconds) with what the profiler makes of it: the container's
    command, limits, user."""

    # Not in the ECR's model, which sets them aside and passes them on as written; honoured here:
    # the test's environment, and a GPU even where `hardware.gpu` asks none.
    env: dict[str, str] = {}
    gpu: bool = False

    @field_validator("env", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else value

    def test_data(self) -> TestData | None:
        """The `sage://bucket/prefix` link (`Testing.read` makes every form one) as a `TestData`."""
        if not self.data:
            return None
        bucket, _, prefix = self.data.removeprefix("sage://").partition("/")
        return TestData(bucket=bucket, prefix=prefix)

    def entrypoint(self) -> list[str] | None:
        """What replaces the image's entrypoint: `command` when `mask_entrypoint`, else nothing."""
        return self.command if self.mask_entrypoint and self.command else None

    def arguments(self) -> list[str]:
        """The container's CMD: `command` (unless it replaced the entrypoint), `args`, then each
        input as `--id value` (pywaggle plugins read inputs as flags: `sampling-interval` is
        `--sampling-interval`; an id that starts with a dash, such as `-ip`, is the flag as is)."""
        out = [] if self.mask_entrypoint else list(self.command)
        out += self.args
        for key, value in self.inputs.items():
            flag = key if key.startswith("-") else f"--{key}"
            if value is True:
                out.append(flag)
            elif value is not False and value is not None:
                out += [flag, str(value)]
        return out

    def timeout_for(self, config: Config) -> float:
        """Seconds before a run is killed: as asked (or the configured default), at most the limit."""
        return min(self.timeout or config.default_timeout_seconds, MAX_TEST_TIMEOUT_SECONDS)

    def repetitions_for(self, config: Config) -> int:
        """The runs per architecture: as asked (or the configured default), at most the limit."""
        return max(1, min(self.repetitions or config.default_repetitions, MAX_TEST_REPETITIONS))

    def copies_for(self, config: Config) -> int:
        return max(1, min(self.concurrency, MAX_TEST_COPIES))

    def user_for(self, config: Config) -> str:
        """The numeric `uid:gid` every run uses; raises `UserRefused` for what may not run."""
        asked = (self.user or "").strip()
        if not asked:
            return config.run_as_user
        if asked.lower() == "root":
            asked = "0:0"
        if not re.match(USER_PATTERN, asked):  # "root" is "0:0" by now
            raise UserRefused(
                f"testing.user {asked[:64]!r} is neither root nor a numeric uid[:gid]: a named "
                "user cannot be shown not to be root"
            )
        uid, _, gid = asked.partition(":")
        if int(uid) == 0 and not config.allow_root_tests:
            raise UserRefused(
                "testing.user asks to run as root; this profiler runs tests as root only where "
                "its operator allows it (SAGE_PROFILER_ALLOW_ROOT_TESTS)"
            )
        return f"{int(uid)}:{int(gid or uid)}"

    def over_limits(self) -> list[str]:
        """What it asks beyond the ECR's limits (a description stored before them, or another
        producer's), in words: the runs go ahead at the limit, and the profile says so."""
        found = []
        if self.timeout is not None and self.timeout > MAX_TEST_TIMEOUT_SECONDS:
            found.append(
                f"testing.timeout asks for {self.timeout:g} s; the profiler allows at most "
                f"{MAX_TEST_TIMEOUT_SECONDS} s, so runs were killed after {MAX_TEST_TIMEOUT_SECONDS} s"
            )
        if self.repetitions is not None and self.repetitions > MAX_TEST_REPETITIONS:
            found.append(
                f"testing.repetitions asks for {self.repetitions} runs; the profiler runs at "
                f"most {MAX_TEST_REPETITIONS}, so only {MAX_TEST_REPETITIONS} ran"
            )
        if self.concurrency > MAX_TEST_COPIES:
            found.append(
                f"testing.concurrency asks for {self.concurrency} copies side by side; the "
                f"profiler tests at most {MAX_TEST_COPIES}, so {self.concurrency} are not shown "
                "to work"
            )
        return found


class UserRefused(ValueError):
    """`testing.user` asks for a user this profiler will not run tests as."""


def size_bytes(value: Any) -> int | None:
    """A size as bytes: the ECR sends a number, `512Mi` or `2G` are read too; else None."""
    if isinstance(value, bool):
        return None
    try:
        size = parse_bytes(value)
    except ValueError:
        return None
    return int(size) if isinstance(size, int | float) and size > 0 else None


def ceilings(hardware: Hardware, config: Config) -> Ceilings:
    """Each run's ceilings: the configured memory, raised to the app's `hardware.min_memory`
    when that is more, but never above `max_memory_limit_bytes`."""
    declared = size_bytes(hardware.min_memory)
    default = config.memory_limit_bytes
    most = max(config.max_memory_limit_bytes, default)
    if declared is None or declared <= default:
        memory, source = default, "default"
    elif declared <= most:
        memory, source = declared, "hardware.min_memory"
    else:
        memory, source = most, "maximum"
    return Ceilings(
        memory_bytes=memory,
        cpus=config.cpu_limit,
        memory_from=source,
        min_memory_bytes=declared,
        default_memory_bytes=default,
        max_memory_bytes=most,
    )
