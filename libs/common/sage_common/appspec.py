"""The parts of an app's description that travel the bus: `testing` and `hardware`.

One contract, two readings. The ECR API validates them strictly when an app is submitted (unknown
fields are refused there, or set aside by its SAGE reader and passed on as written); the event
carries them as the ECR stored them (`AppSubmitted.testing`, `BuildDone.testing`). The profiler
reads them back with the same models, leniently (`Testing.read`, `Hardware.read`): older spellings
are accepted, unknown fields ignored, and the rules marked `Rule` (limits, the user) are left to
the reader, which runs at the limit and says what it did not do, instead of refusing the build.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationError,
    ValidationInfo,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticKnownError, core_schema

# What the profiler honours in an app's `testing`, and so the most the ECR accepts: one source,
# so that nothing submitted is cut down without a word.
MAX_TEST_REPETITIONS = 10  # runs per architecture
MAX_TEST_COPIES = 8  # copies run side by side (`testing.concurrency`)
MAX_TEST_TIMEOUT_SECONDS = 3600  # the longest `testing.timeout`, in seconds

Architecture = Literal["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6"]
Scalar = str | int | float | bool

# Validation context of the lenient reading; a `Rule` holds only without it.
_LENIENT = "sage_lenient"


@dataclass(frozen=True)
class Rule:
    """A bound (or pattern) the ECR refuses a description for, and the profiler only reports.

    The JSON Schema and the error are those of pydantic's own `Field(ge=, gt=, le=, pattern=)`."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    pattern: str | None = None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        bounds = {"minimum": self.ge, "exclusiveMinimum": self.gt, "maximum": self.le}
        out.update({k: v for k, v in bounds.items() if v is not None})
        if self.pattern is not None:
            out["pattern"] = self.pattern
        return out

    def _check(self, value: Any, info: ValidationInfo) -> Any:
        if isinstance(info.context, Mapping) and info.context.get(_LENIENT):
            return value
        if self.ge is not None and value < self.ge:
            raise PydanticKnownError("greater_than_equal", {"ge": self.ge})
        if self.gt is not None and value <= self.gt:
            raise PydanticKnownError("greater_than", {"gt": self.gt})
        if self.le is not None and value > self.le:
            raise PydanticKnownError("less_than_equal", {"le": self.le})
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise PydanticKnownError("string_pattern_mismatch", {"pattern": self.pattern})
        return value


# ---------------------------------------------------------------------------- value types ----
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "KI": 1024,
    "MI": 1024**2,
    "GI": 1024**3,
    "TI": 1024**4,
}


def parse_bytes(value: Any) -> Any:
    """`512Mi`, `1G`, `2GiB` or a number of bytes -> bytes (an int); other input is left to fail."""
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if not match:
            raise ValueError("a size such as 512Mi, 2G or a number of bytes")
        unit = (match.group(2) or "").upper().removesuffix("B")
        return int(float(match.group(1)) * _SIZE_UNITS[unit])
    return value


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_seconds(value: Any) -> Any:
    """`90s`, `5m`, `1h` or a number of seconds -> seconds (a number)."""
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError("a duration such as 90s, 5m, 1h or a number of seconds")
        return float(match.group(1)) * _DURATION_UNITS[(match.group(2) or "").lower()]
    return value


Bytes = Annotated[int, BeforeValidator(parse_bytes), Field(ge=0, description="bytes, or 512Mi, 2G")]
Seconds = Annotated[
    float, BeforeValidator(parse_seconds), Rule(gt=0), Field(description="seconds, or 90s, 5m, 1h")
]
Word = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
]
# An input's id, as SAGE apps write them: `threshold`, `sampling-interval`, `out_dir`, `-ip` (a
# flag that already carries its dashes). The profiler passes each as `--id value`.
INPUT_ID_PATTERN = r"^-{0,2}[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
InputId = Annotated[str, StringConstraints(pattern=INPUT_ID_PATTERN)]
SAGE_BUCKET_PATTERN = r"^sage://[A-Za-z0-9][A-Za-z0-9_-]{0,127}(/[^\s]*)?$"
SageBucketLink = Annotated[str, StringConstraints(max_length=2048, pattern=SAGE_BUCKET_PATTERN)]
_Arg = Annotated[str, Field(max_length=4096)]
USER_PATTERN = r"^(root|\d{1,10}(:\d{1,10})?)$"


# --------------------------------------------------------------------------------- models ----
class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @classmethod
    def _known(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in raw.items() if k in cls.model_fields}


class Hardware(_Part):
    """What a node must have to run the app."""

    architectures: list[Architecture] | None = Field(
        default=None, description="defaults to source.architectures; must be among them"
    )
    gpu: Literal["required", "optional", "none"] = "none"
    min_memory: Bytes | None = None
    devices: Annotated[list[Word], Field(max_length=32)] = []

    @classmethod
    def read(cls, raw: Mapping[str, Any] | None) -> Self:
        """`hardware` as an event carries it, leniently: a field that does not parse is absent."""
        data = cls._known(raw or {})
        while True:
            try:
                return cls.model_validate(data)
            except ValidationError as exc:
                bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
                if not bad & data.keys():
                    raise
                data = {k: v for k, v in data.items() if k not in bad}


# Spellings older descriptions (and other producers) use, as the profiler has always read them.
SPELLINGS = {
    "arguments": "args",
    "test_data": "data",
    "timeout_seconds": "timeout",
    "period_seconds": "period",
    "copies": "concurrency",
}


class Testing(_Part):
    """How to test the app and what it must prove before review."""

    __test__ = False  # not a pytest test class

    command: Annotated[list[_Arg], Field(max_length=256)] = []
    args: Annotated[list[_Arg], Field(max_length=256)] = []
    mask_entrypoint: bool = False
    inputs: dict[InputId, Scalar] = {}
    data: SageBucketLink | None = Field(default=None, description="mounted read-only at /data")
    # Absent: the profiler's unprivileged user. `root` runs only where its operator allows it.
    user: Annotated[str, Rule(pattern=USER_PATTERN)] | None = Field(
        default=None, description="root, or a numeric uid[:gid]; absent: the profiler's user"
    )
    # Absent: the profiler decides (its `default_timeout_seconds`, 300 unless configured otherwise).
    timeout: Annotated[Seconds, Rule(le=MAX_TEST_TIMEOUT_SECONDS)] | None = Field(
        default=None, description="seconds before the test is killed; absent: the profiler's (300)"
    )
    expected_exit_code: Annotated[int, Rule(ge=0, le=255)] = 0
    # Absent: the profiler decides (its `default_repetitions`, 3 unless configured otherwise).
    repetitions: Annotated[int, Rule(ge=1, le=MAX_TEST_REPETITIONS)] | None = Field(
        default=None, description="runs per architecture; absent: the profiler's default (3)"
    )
    period: Seconds | None = Field(
        default=None, description="the app must be able to run this often"
    )
    concurrency: Annotated[int, Rule(ge=1, le=MAX_TEST_COPIES)] = Field(
        default=1, description="copies that must run side by side"
    )

    @classmethod
    def read(cls, raw: Mapping[str, Any] | None) -> Self:
        """`testing` as an event carries it (absent: run the image as it is), read leniently:
        older spellings, a command or args as one string, a `data` bucket as `{bucket, prefix}`
        or without `sage://`, unknown fields ignored, and no `Rule` enforced. A subclass reads
        its own added fields the same way."""
        data = dict(raw or {})
        for old, new in SPELLINGS.items():
            if old in data and new not in data:  # the current name wins, even as null
                data[new] = data[old]
            data.pop(old, None)
        for key in ("command", "args"):
            if isinstance(data.get(key), str):
                data[key] = shlex.split(data[key])
        data["data"] = _bucket_link(data.get("data"))
        if isinstance(data.get("inputs"), Mapping):
            data["inputs"] = {k: v for k, v in data["inputs"].items() if v is not None}
        return cls.model_validate(cls._known(data), context={_LENIENT: True})


def _bucket_link(value: Any) -> Any:
    """`sage://bucket/prefix` from the forms the profiler has read: that link, `bucket/prefix`,
    `{bucket, prefix}`; empty is absent."""
    if value is None or value == "":
        return None
    if isinstance(value, Mapping) and isinstance(value.get("bucket"), str):
        return f"sage://{value['bucket']}/{value.get('prefix') or ''}"
    if isinstance(value, str) and not value.startswith("sage://"):
        return f"sage://{value}"
    return value
