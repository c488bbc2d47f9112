"""The small value types of the app description: names, versions, links (those of `testing` and
`hardware` are the bus's contract, in `sage_common.appspec`). Each is an `Annotated` type, so the
rule lives in one place and shows up in the JSON Schema.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StringConstraints, WithJsonSchema

from sage_common.redact import url_credentials

# Docker's rule for a repository path component, so `namespace/name` is also a registry path.
NAME_PATTERN = r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$"
# A version is any registry tag (SAGE's ECR took any text, and the tag is what must hold): `1.0`,
# `0.24.8.20`, `1.2.3-rc.1`, `v2.0`. `+` (semver build metadata) cannot be in a tag.
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
_TAG_RE = re.compile(TAG_PATTERN)
# The versions that sort numerically: one to four numbers (an optional leading `v`), then an
# optional pre-release after `-`, which sorts before the release as in semver.
_NUMERIC_RE = re.compile(r"^[vV]?(\d{1,10}(?:\.\d{1,10}){0,3})(?:-([A-Za-z0-9._-]+))?$")

_NAME_RE = re.compile(NAME_PATTERN)
NAME_RULE = (
    "2 to 64 lowercase letters and digits, separated by '.', '_', '__' or dashes, "
    "starting and ending with a letter or digit"
)


def suggest_name(value: str) -> str:
    """The nearest valid name: lowercased, other characters turned into dashes, trimmed."""
    name = re.sub(r"[^a-z0-9._-]+", "-", value.strip().lower())
    name = re.sub(r"[._-]{2,}", lambda m: m[0] if re.fullmatch(r"__|-+", m[0]) else "-", name)
    return name.strip("._-")[:64].strip("._-")


def _check_name(value: str) -> str:
    if not (2 <= len(value) <= 64 and _NAME_RE.match(value)):
        better = suggest_name(value)
        hint = f": write {better!r}" if 2 <= len(better) and _NAME_RE.match(better) else ""
        if value != value.lower():
            # SAGE refused capitals too (its ECR and the registry take lowercase names only).
            raise ValueError(f"{value!r} has capital letters; names are lowercase{hint}")
        raise ValueError(f"{value!r} is not a valid name ({NAME_RULE}){hint}")
    return value


def _text(value: Any) -> Any:
    """YAML reads `version: 1.0` as a number; keep it as text so the message says what is wrong."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _check_version(value: str) -> str:
    if not _TAG_RE.match(value):
        better = re.sub(r"[^A-Za-z0-9._-]+", "-", value.strip().replace("+", "-")).strip(".-")
        hint = f": write {better!r}" if better and _TAG_RE.match(better) else ""
        raise ValueError(
            f"{value!r} cannot be a registry tag (letters, digits, '.', '_' and '-', at most 128, "
            f"not starting with '.' or '-'; no '+' or spaces){hint}"
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
    AfterValidator(_check_version),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 128,
            "pattern": TAG_PATTERN,
            "description": "a registry tag: 1.0, 1.2.3, 0.24.8.20, 2.0.0-rc.1",
        }
    ),
]
ShortText = Annotated[str, StringConstraints(max_length=256)]
LongText = Annotated[str, StringConstraints(max_length=16_384)]


def _no_credentials(value: str) -> str:
    """Refuse a user name or password in a link: an app's description is shown to its readers."""
    problem = url_credentials(value)
    if problem is not None:
        raise ValueError(
            f"the URL {problem}: links in an app description are shown to everyone who may "
            "read the app; give it without user name or password"
        )
    return value


def _no_git_credentials(value: str) -> str:
    """As `_no_credentials`, saying how the builder reaches a repository instead."""
    problem = url_credentials(value)
    if problem is not None:
        raise ValueError(
            f"the URL {problem}: an app's source URL is shown to everyone who may read the app "
            "and is never a place for credentials; the builder fetches the repository anonymously "
            "over https, so give the URL of a public repository (a public mirror of a private one "
            "will do), without user name or password"
        )
    return value


HttpUrl = Annotated[
    str,
    StringConstraints(max_length=2048, pattern=r"^https?://[^\s]+$"),
    AfterValidator(_no_credentials),
]
# Git remotes: URLs of the usual schemes, or scp-like `user@host:path`; no credentials, but a
# plain ssh login (`git@github.com:org/repo`, `ssh://git@host/repo`) is not one.
GitUrl = Annotated[
    str,
    StringConstraints(
        max_length=2048,
        pattern=r"^((https?|git|ssh|file)://[^\s]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+)$",
    ),
    AfterValidator(_no_git_credentials),
]
# A data set in the SAGE object store (`sage://<bucket-id>/<prefix>`) or a web link.
DataLink = Annotated[
    str,
    StringConstraints(
        max_length=2048,
        pattern=r"^(sage://[A-Za-z0-9][A-Za-z0-9_-]{0,127}(/[^\s]*)?|https?://[^\s]+)$",
    ),
    AfterValidator(_no_credentials),
]


def _relative_path(value: str) -> str:
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts:
        raise ValueError("must be a path inside the repository (relative, no '..')")
    return value


RelativePath = Annotated[
    str, StringConstraints(min_length=1, max_length=1024), AfterValidator(_relative_path)
]


def split_commas(value: Any) -> Any:
    """SAGE wrote keywords as one comma-separated string; accept that as well as a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _pad(part: str) -> str:
    return f"{int(part):010d}" if part.isdigit() else part


def version_key(version: str) -> str:
    """A text that sorts versions numerically (compare it byte by byte, `COLLATE "C"`).

    One to four numbers pad to four (`1.0` and `1.0.0` sort together, the shorter first); a
    pre-release sorts before its release as in semver; any other tag sorts before all numbered
    versions, by its text. The version itself ends the key, so two versions never share one.
    """
    match = _NUMERIC_RE.match(version)
    if not match:
        return "0" + version
    numbers, pre = match.groups()
    parts = numbers.split(".")
    key = "1" + ".".join(_pad(p) for p in parts + ["0"] * (4 - len(parts)))
    key += "~" if pre is None else "-" + ".".join(_pad(p) for p in pre.split("."))
    return key + " " + version
