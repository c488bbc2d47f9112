"""An app version's ecr-meta files: recorded from `build.done`, listed in the app document, served.

The ECR checks what the builder reports (a known kind, a content type it may send, a plain name,
a location under that very build's prefix; docs/builder.md) and serves files only from the
builder's bucket, to whoever may read the app (404 to anyone else).
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sage_common.auth import Principal
from sage_common.errors import NotFound
from sage_common.schemas import MetaFile

from . import service_access as access
from . import views
from .acl import Permission
from .records import App, MetaFileRow
from .s3 import S3LogReader, S3Stream

if TYPE_CHECKING:
    from .service import Ecr

log = logging.getLogger(__name__)

KINDS = ("thumbnail", "image", "science_description")
# What may go out as a meta file's Content-Type: raster images and markdown, never HTML or SVG.
CONTENT_TYPES = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "text/markdown; charset=utf-8",
)
_NAME_RE = re.compile(r"^ecr-[a-z0-9-]{1,64}\.[a-z]{2,4}$")


@dataclass(frozen=True)
class MetaFiles:
    """The reader and the one bucket files are served from (the builder's)."""

    reader: S3LogReader
    bucket: str


@dataclass
class Download:
    """A file found and readable: its record, and its bytes unless the caller has them already."""

    file: MetaFileRow
    stream: S3Stream | None

    @property
    def etag(self) -> str:
        return f'"{self.file.sha256}"'


def object_key(ns: str, name: str, version: str, build_id: Any, file_name: str) -> str:
    """Where the builder stores a build's file (its `metafiles.meta_key`)."""
    return f"builds/{ns}/{name}/{version}/{build_id}/ecr-meta/{file_name}"


def split_location(location: str) -> tuple[str, str] | None:
    """`s3://bucket/key` -> (bucket, key)."""
    bucket, _, key = location.removeprefix("s3://").partition("/")
    if not location.startswith("s3://") or not bucket or not key:
        return None
    return bucket, key


def _problem(app: App, build_id: uuid.UUID, f: MetaFile) -> str | None:
    if not _NAME_RE.match(f.name):
        return "not a file name the builder writes"
    if f.kind not in KINDS:
        return f"unknown kind {f.kind!r}"
    if f.content_type not in CONTENT_TYPES:
        return f"content type {f.content_type!r} is not served"
    if f.size < 0 or not re.fullmatch(r"[0-9a-f]{64}", f.sha256):
        return "no size or sha256"
    where = split_location(f.location)
    expected = object_key(app.namespace, app.name, app.version, build_id, f.name)
    if where is None or where[1] != expected:
        return "stored outside the build's own prefix"
    return None


def accepted(app: App, build_id: uuid.UUID, files: list[MetaFile]) -> list[MetaFileRow]:
    """The reported files the ECR keeps; the rest are logged and dropped (one icon at most)."""
    rows: list[MetaFileRow] = []
    for f in files:
        problem = _problem(app, build_id, f)
        if problem is None and any(r.file_name == f.name for r in rows):
            problem = "reported twice"
        if problem is None and f.kind == "thumbnail" and any(r.kind == f.kind for r in rows):
            problem = "a second icon"
        if problem is not None:
            log.warning("ecr-meta file dropped: %s", problem, extra={"file": f.name[:100]})
            continue
        rows.append(
            MetaFileRow(f.name, f.kind, f.content_type, f.size, f.sha256, f.location, build_id)
        )
    return rows


async def open_file(
    ecr: Ecr,
    files: MetaFiles,
    who: Principal | None,
    ns: str,
    name: str,
    version: str,
    file_name: str,
    if_none_match: str | None = None,
) -> Download:
    """One file of a version the caller may read, opened for streaming (or not, when the
    caller's copy is current); 404 for an unknown file and for whoever may not read the app."""
    async with ecr.store.read() as tx:
        app = await access.app_for(tx, who, ecr.policy, ns, name, version, Permission.READ)
        row = await tx.meta_file(app.id, file_name)
    missing = NotFound(f"{views.app_id(ns, name, version)} has no meta file {file_name!r}")
    if row is None:
        raise missing
    where = split_location(row.location)
    expected = object_key(ns, name, version, row.build_id, row.file_name)
    if where != (files.bucket, expected):
        log.error("ecr-meta file recorded outside the builder's bucket", extra={"file": file_name})
        raise missing
    found = Download(row, None)
    if if_none_match is not None and found.etag in (t.strip() for t in if_none_match.split(",")):
        return found
    stream = await files.reader.open(*where)
    if stream is None:
        raise missing
    if stream.size != row.size:
        await stream.close()
        log.error("ecr-meta file changed in the store", extra={"file": file_name})
        raise missing
    found.stream = stream
    return found
