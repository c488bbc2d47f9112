"""The app's `testing` description, as the profiler reads it from `build.done`.

The ECR API validates the description when it is submitted; here it is read leniently (unknown
fields ignored, a few spellings accepted). Repetitions and copies are held to the limits the ECR
validates against (`sage_common.schemas`); anything over them is reported (`over_limits`), never
cut down without a word. `hardware.min_memory` raises the memory ceiling (`ceilings`).
"""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from sage_common.schemas import (
    MAX_TEST_COPIES,
    MAX_TEST_REPETITIONS,
    MAX_TEST_TIMEOUT_SECONDS,
    Ceilings,
)

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


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(value: Any) -> Any:
    """`90s`, `5m`, `1h` or a number of seconds, as the ECR API accepts them."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError("a duration such as 90s, 5m, 1h or a number of seconds")
        return float(match.group(1)) * _UNITS[match.group(2).lower()]
    return value


Seconds = Annotated[float, BeforeValidator(seconds)]


class TestingSpec(BaseModel):
    """How to run the app's test: command, arguments, inputs, data, and what must hold.

    Field names follow the ECR app description's `testing` (durations in seconds)."""

    __test__ = False  # not a pytest test class
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("args", "arguments")
    )
    mask_entrypoint: bool = False  # True: `command` replaces the image's entrypoint
    inputs: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    data: str | dict[str, Any] | None = Field(
        None, validation_alias=AliasChoices("data", "test_data")
    )
    timeout: Seconds | None = Field(
        None, validation_alias=AliasChoices("timeout", "timeout_seconds")
    )
    expected_exit_code: int = 0
    repetitions: int | None = None
    period: Seconds | None = Field(None, validation_alias=AliasChoices("period", "period_seconds"))
    concurrency: int = Field(1, validation_alias=AliasChoices("concurrency", "copies"))
    gpu: bool = False
    # `root`, or a numeric non-root `uid[:gid]` the image's files need; absent: the profiler's
    # unprivileged user. Root is honoured only where the operator allows it.
    user: str | None = None

    @field_validator("command", "args", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return shlex.split(value) if isinstance(value, str) else value

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

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1} | {
    unit: base**power
    for power, letter in enumerate("kmgt", start=1)
    for unit, base in ((letter, 1000), (letter + "i", 1024))
}


def size_bytes(value: Any) -> int | None:
    """A size as bytes: the ECR sends a number, `512Mi` or `2G` are read too; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value) if value > 0 else None
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match:
        return None
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()]) or None


def ceilings(hardware: dict[str, Any] | None, config: Config) -> Ceilings:
    """Each run's ceilings: the configured memory, raised to the app's `hardware.min_memory`
    when that is more, but never above `max_memory_limit_bytes`."""
    declared = size_bytes((hardware or {}).get("min_memory"))
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
    return TestingSpec.model_validate(raw or {})
