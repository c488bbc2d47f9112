"""The app's `testing` and `hardware` as the profiler reads them from `build.done`, and what it does
with them.

The contract is `sage_common.appspec`: the ECR API validates a description against the same models
when it is submitted; here they are read leniently (`Testing.read`: older spellings, unknown fields
ignored, no limit refused). Repetitions, copies and the timeout are held to the limits the ECR
validates against; anything over them is reported (`over_limits`), never cut down without a word.
`hardware.min_memory` raises the memory ceiling (`ceilings`).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, field_validator

from sage_common.appspec import (
    MAX_TEST_COPIES,
    MAX_TEST_REPETITIONS,
    MAX_TEST_TIMEOUT_SECONDS,
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

    @classmethod
    def parse(cls, value: Any) -> TestData | None:
        if value is None or value == "":
            return None
        if isinstance(value, str):
            ref = value.removeprefix("sage://")
            bucket, _, prefix = ref.partition("/")
            return cls(bucket=bucket, prefix=prefix)
        return cls.model_validate(value)


class TestingSpec(Testing):
    """`testing` with what the profiler makes of it: the container's command, limits, user.

    Field names follow the ECR app description's `testing` (durations in seconds); read one with
    `TestingSpec.read` (`parse_testing`)."""

    # Not in the ECR's model, which sets them aside and passes them on as written; honoured here:
    # the test's environment, and a GPU even where `hardware.gpu` asks none.
    env: dict[str, str] = {}
    gpu: bool = False

    @field_validator("env", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else value

    def test_data(self) -> TestData | None:
        return TestData.parse(self.data)

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
            elif value is False or value is None:
                continue
            else:
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
        if not _NUMERIC_USER.match(asked):
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
        """What the description asks beyond what the profiler runs, in words (empty: nothing).

        The ECR refuses such descriptions; one stored before the limits, or sent by another
        producer, still gets its runs at the limit, and the profile says what was not done."""
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


_NUMERIC_USER = re.compile(r"^\d{1,10}(:\d{1,10})?$")


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


def parse_testing(raw: dict[str, Any] | None) -> TestingSpec:
    """The description in `build.done` (or the defaults: run the image as it is, once per rep)."""
    return TestingSpec.read(raw)
