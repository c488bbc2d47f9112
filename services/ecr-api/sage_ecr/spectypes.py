"""The small value types of the app description: names, semver versions, sizes, durations, links.

Each is an `Annotated` type, so the rule lives in one place and shows up in the JSON Schema.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, WithJsonSchema

# Docker's rule for a repository path component, so `namespace/name` is also a registry path.
NAME_PATTERN = r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$"
# Semantic Versioning 2.0.0 without build metadata: `+` is not allowed in a registry tag.
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?$"
)
_SEMVER_RE = re.compile(SEMVER_PATTERN)
ARCHITECTURES = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6")
INPUT_TYPES = ("boolean", "int", "long", "float", "double", "string", "File", "Directory")

_NAME_RE = re.compile(NAME_PATTERN)
NAME_RULE = (
    "2 to 64 lowercase letters and digits, separated by '.', '_', '__' or dashes, "
    "starting and ending with a letter or digit"
)


def _check_name(value: str) -> str:
    if not (2 <= len(value) <= 64 and _NAME_RE.match(value)):
        raise ValueError(f"not a valid name: {NAME_RULE}")
    return value


def _text(value: Any) -> Any:
    """YAML reads `version: 1.0` as a number; keep it as text so the message says what is wrong."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _check_semver(value: str) -> str:
    if len(value) > 64 or not _SEMVER_RE.match(value):
        raise ValueError(
            f"{value!r} is not a semantic version: write MAJOR.MINOR.PATCH[-PRERELEASE], e.g. 1.0.0"
        )
    return value


Name = Annotated[
    str,
    AfterValidator(_check_name),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 2,
            "maxLength": 64,
            "pattern": NAME_PATTERN,
            "description": NAME_RULE,
        }
    ),
]
Version = Annotated[
    str,
    BeforeValidator(_text),
    AfterValidator(_check_semver),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 64,
            "pattern": SEMVER_PATTERN,
            "description": "semantic version MAJOR.MINOR.PATCH[-PRERELEASE], e.g. 1.0.0",
        }
    ),
]
Word = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
ShortText = Annotated[str, StringConstraints(max_length=256)]
LongText = Annotated[str, StringConstraints(max_length=16_384)]
HttpUrl = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s]+$")]
# Git remotes: URLs of the usual schemes, or scp-like `user@host:path`.
GitUrl = Annotated[
    str,
    StringConstraints(
        max_length=2048,
        pattern=r"^((https?|git|ssh|file)://[^\s]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+)$",
    ),
]
# A data set in the SAGE object store (`sage://<bucket-id>/<prefix>`) or a web link.
DataLink = Annotated[
    str,
    StringConstraints(
        max_length=2048,
        pattern=r"^(sage://[A-Za-z0-9][A-Za-z0-9_-]{0,127}(/[^\s]*)?|https?://[^\s]+)$",
    ),
]
SageBucketLink = Annotated[
    str,
    StringConstraints(
        max_length=2048, pattern=r"^sage://[A-Za-z0-9][A-Za-z0-9_-]{0,127}(/[^\s]*)?$"
    ),
]


def _relative_path(value: str) -> str:
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts:
        raise ValueError("must be a path inside the repository (relative, no '..')")
    return value


RelativePath = Annotated[
    str, StringConstraints(min_length=1, max_length=1024), AfterValidator(_relative_path)
]

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
    float, BeforeValidator(parse_seconds), Field(gt=0, description="seconds, or 90s, 5m, 1h")
]


def split_commas(value: Any) -> Any:
    """SAGE wrote keywords as one comma-separated string; accept that as well as a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def version_key(version: str) -> str:
    """A string that sorts like semver precedence (releases after their pre-releases)."""
    match = _SEMVER_RE.match(version)
    if not match:
        return version
    major, minor, patch, pre = match.groups()
    key = f"{int(major):010d}.{int(minor):010d}.{int(patch):010d}"
    if pre is None:
        return key + "~"  # '~' sorts after every pre-release character
    parts = [f"{int(p):010d}" if p.isdigit() else p for p in pre.split(".")]
    return key + "-" + ".".join(parts)
