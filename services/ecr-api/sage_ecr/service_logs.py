"""The build log as text, read from the builder's bucket by byte offset while the build runs.

The log is complete once `build.done` is recorded (the builder writes its last bytes first); the
object's `complete: true` mark is not trusted: a builder stopped mid-build sets it, then another
replica builds again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from sage_common.auth import Principal
from sage_common.errors import NotFound

from . import service_access as access
from . import views
from .acl import Permission
from .records import Build
from .s3 import LogObject
from .service import Ecr


class LogReader(Protocol):
    """Where build logs are read from (S3 in the service, a dict in unit tests)."""

    async def read(self, bucket: str, key: str, offset: int, length: int) -> LogObject | None: ...

    async def close(self) -> None: ...


class LogQuery(BaseModel):
    """`?format=text|json&offset=N` of `GET .../logs`."""

    format: Literal["text", "json"] | None = None
    offset: int = Field(default=0, ge=0)


@dataclass(frozen=True)
class BuildLogs:
    """The reader and the settings the log use case needs."""

    reader: LogReader
    bucket: str
    chunk_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class LogPage:
    """Bytes of one build's log from `offset`, and what a follower needs to go on."""

    build_id: str | None
    build_number: int
    offset: int
    data: bytes
    size: int  # the whole log's length now; smaller than `offset` if the build started over
    complete: bool  # the build has finished: nothing will be added

    @property
    def next_offset(self) -> int:
        return self.offset + len(self.data)


def log_prefix(namespace: str, name: str, version: str) -> str:
    """Where the builder writes the logs of a version's builds in its bucket (docs/builder.md)."""
    return f"builds/{namespace}/{name}/{version}/"


def log_key(namespace: str, name: str, version: str, build_id: str) -> str:
    """Where the builder writes a build's log in its bucket (docs/builder.md)."""
    return f"{log_prefix(namespace, name, version)}{build_id}.log"


def where(logs: BuildLogs, build: Build, ns: str, name: str, version: str) -> tuple[str, str]:
    """(bucket, key): where the build's events said the log is, else the documented place; an
    event is believed only under this version's prefix in the builder's bucket (an event is no
    reason to read any other object the ECR's S3 keys reach)."""
    location = str(views.log_location(build) or "")
    bucket, _, key = location.removeprefix("s3://").partition("/")
    prefix = log_prefix(ns, name, version)
    rest = key.removeprefix(prefix)
    if (
        location.startswith("s3://")
        and bucket == logs.bucket
        and key.startswith(prefix)
        and all(part not in ("", ".", "..") for part in rest.split("/"))
        and "\\" not in rest
    ):
        return bucket, key
    return logs.bucket, log_key(ns, name, version, str(build.build_id))


def _tail_text(done: dict[str, Any]) -> bytes:
    lines = [str(line) for line in done.get("log_tail") or []]
    return "".join(line + "\n" for line in lines).encode()


async def read_log(
    ecr: Ecr,
    logs: BuildLogs,
    who: Principal | None,
    ns: str,
    name: str,
    version: str,
    offset: int,
    build_number: int | None = None,
) -> LogPage:
    """The log of the current build (or build `build_number`) from `offset`; none yet is an empty
    page, and a finished build whose log never reached S3 (the builder goes on through an outage)
    answers the tail `build.done` carried."""
    async with ecr.store.read() as tx:
        app = await access.app_for(tx, who, ecr.policy, ns, name, version, Permission.READ)
        if build_number is None:
            build = await tx.get_build(app.build_id)
        else:
            build = await tx.get_build_by_number(app.id, build_number)
            if build is None:
                raise NotFound(f"{app.ident} has no build {build_number}")
    if build is None:
        return LogPage(None, app.build_number, offset, b"", 0, complete=True)
    done = build.done or {}
    finished = build.done_event is not None or bool(done)
    bucket, key = where(logs, build, ns, name, version)
    found = await logs.reader.read(bucket, key, offset, logs.chunk_bytes)
    if found is None and finished:
        text = _tail_text(done)
        found = LogObject(text[offset : offset + logs.chunk_bytes], len(text), True)
    # None: no log yet, or one being rewritten (S3 servers may show no object for a moment while
    # it is replaced). Either way nothing is new; a follower keeps what it has.
    data, size = (found.data, found.size) if found else (b"", offset)
    return LogPage(str(build.build_id), build.build_number, offset, data, size, finished)
