"""What the storage API takes and answers, in the SAGE storage API's JSON shapes."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from .access import Permission

_NAME_RE = re.compile(r"^\w[\w .+@/-]{0,127}$")
_META_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_META_ENTRIES = 64
MAX_META_VALUE = 1024


def sage_time(value: datetime) -> str:
    """Times as SAGE writes them: `2020-05-06T18:41:19Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name(value: str) -> str:
    if value and (not _NAME_RE.match(value) or value != value.strip()):
        raise ValueError(
            "a name is 1-128 letters, digits, spaces or . _ - + @ /,"
            " starting with a letter or digit"
        )
    return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_META_ENTRIES:
        raise ValueError(f"at most {MAX_META_ENTRIES} metadata entries")
    for key, item in value.items():
        if not _META_KEY_RE.match(key):
            raise ValueError(f"metadata key {key[:64]!r}: use 1-64 letters, digits, _ . -")
        if len(item) > MAX_META_VALUE:
            raise ValueError(f"metadata value of {key!r} is longer than {MAX_META_VALUE}")
    return value


Name = Annotated[str, AfterValidator(_name)]
BucketType = Annotated[
    Literal["training-data", "model", "profile", "none"], BeforeValidator(_lower)
]
Metadata = Annotated[dict[str, str], AfterValidator(_metadata)]


class CreateBucket(BaseModel):
    """`POST /api/v1/objects`: from the query (`type`, `name`, `public`) or a JSON body."""

    model_config = ConfigDict(extra="forbid")

    name: Name = ""
    type: BucketType = "none"
    public: bool = False
    metadata: Metadata = Field(default_factory=dict)


class UpdateBucket(BaseModel):
    """`PATCH /api/v1/objects/{id}`: the fields given replace the stored ones."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    type: BucketType | None = None
    metadata: Metadata | None = None  # null leaves the stored metadata as it is


class Grant(BaseModel):
    """One grant, exactly the three members SAGE clients send and read."""

    model_config = ConfigDict(extra="forbid")

    granteeType: Literal["USER", "GROUP"]  # noqa: N815 - the wire name
    grantee: str = Field(min_length=1, max_length=256)
    permission: Permission

    @field_validator("grantee")
    @classmethod
    def _no_separator(cls, value: str) -> str:
        if ":" in value or not value.isprintable() or value != value.strip():
            raise ValueError("a grantee name has no ':', spaces at its ends or control characters")
        return value


@dataclass
class Bucket:
    id: uuid.UUID
    name: str
    owner: str
    type: str
    metadata: dict[str, str]
    time_created: datetime
    time_last_updated: datetime
    granted: list[str] = field(default_factory=list)  # the caller's own grants, when asked

    def json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "owner": self.owner,
            "type": self.type,
            "time_created": sage_time(self.time_created),
            "time_last_updated": sage_time(self.time_last_updated),
            "metadata": self.metadata,
        }


@dataclass
class StoredObject:
    bucket_id: uuid.UUID
    key: str
    blob: str
    size: int
    sha256: str
    md5: str | None
    content_type: str
    last_modified: datetime
