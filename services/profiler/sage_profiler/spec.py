"""The app's `testing` description, as the profiler reads it from `build.done`.

The ECR API validates the description when it is submitted; here it is read leniently (unknown
fields ignored, a few spellings accepted) and clamped to what configuration allows.
"""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

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
        input as `--id value` (pywaggle plugins read inputs as flags)."""
        out = [] if self.mask_entrypoint else list(self.command)
        out += self.args
        for key, value in self.inputs.items():
            if value is True:
                out.append(f"--{key}")
            elif value is False or value is None:
                continue
            else:
                out += [f"--{key}", str(value)]
        return out

    def timeout_for(self, config: Config) -> float:
        return min(self.timeout or config.default_timeout_seconds, config.max_timeout_seconds)

    def repetitions_for(self, config: Config) -> int:
        return max(1, min(self.repetitions or config.default_repetitions, config.max_repetitions))

    def copies_for(self, config: Config) -> int:
        return max(1, min(self.concurrency, config.max_copies))


def parse_testing(raw: dict[str, Any] | None) -> TestingSpec:
    """The description in `build.done` (or the defaults: run the image as it is, once per rep)."""
    return TestingSpec.model_validate(raw or {})
