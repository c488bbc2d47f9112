"""An app's `ecr-meta/` folder: the science description, icon and images that the portal shows.

SAGE's ECR fetched them from the repository at submission; the builder reads them from the
checkout it builds (the app's `directory` first, then the root), keeps only the names below,
refuses links, special files, oversized files and content unlike its name, and stores what passes
beside the build log. A refused file is a warning in the log, never a failed build (SAGE did not
fail a submission over a missing picture).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sage_common.schemas import MetaFile

from .buildlog import FileSink
from .models import BuildRequest, Checkout

log = logging.getLogger(__name__)

FOLDER = "ecr-meta"
DESCRIPTION = "ecr-science-description.md"
MARKDOWN = "text/markdown; charset=utf-8"
# Raster formats every browser shows. No SVG: it can carry scripts.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "gif", "webp")
_EXT = "|".join(IMAGE_EXTENSIONS)
_ICON_RE = re.compile(rf"^ecr-icon\.({_EXT})$")
_IMAGE_RE = re.compile(rf"^ecr-science-image(?:-(\d{{1,2}}))?\.({_EXT})$")
# The start of an HTML tag, comment or declaration: `<` before a letter, `/`, `!` or `?`.
_TAG_RE = re.compile(r"<(?=[A-Za-z/!?])")
_UNEXPECTED_SHOWN = 5


class Refused(Exception):
    """A file of the folder that is not imported, with the reason for the build log."""


@dataclass(frozen=True)
class MetaLimits:
    """How much of a folder is imported (builder settings `meta_*`)."""

    max_file_bytes: int = 5 * 1024**2
    max_total_bytes: int = 20 * 1024**2
    max_images: int = 8


@dataclass(frozen=True)
class Accepted:
    """A file that passed: its kind, the type its content shows, the bytes to store."""

    name: str
    kind: str  # thumbnail, image, science_description
    content_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def kind_of(name: str) -> str | None:
    """The kind a file name stands for in SAGE's naming, or None for a name the ECR ignores."""
    if name == DESCRIPTION:
        return "science_description"
    if _ICON_RE.match(name):
        return "thumbnail"
    if _IMAGE_RE.match(name):
        return "image"
    return None


def _order(name: str) -> tuple[int, int, int]:
    """Description, icon, then images (`ecr-science-image` first, then by number); by extension."""
    kind = ("science_description", "thumbnail", "image").index(kind_of(name) or "image")
    match = _IMAGE_RE.match(name)
    number = int(match.group(1)) + 1 if match and match.group(1) else 0
    ext = name.rpartition(".")[2]
    return (kind, number, IMAGE_EXTENSIONS.index(ext) if ext in IMAGE_EXTENSIONS else 0)


def sniff_image(data: bytes) -> str | None:
    """The image type the bytes begin with (PNG, JPEG, GIF, WebP), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def clean_markdown(data: bytes) -> bytes:
    """UTF-8 text with raw HTML made visible (a tag's `<` becomes `&lt;`): the portal renders it as
    HTML (SAGE's ECR escaped tags with bleach for that). Markdown and a lone `<` (`a < b`) stay."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("is not UTF-8 text") from None
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise Refused("is not text (it holds NUL bytes)")
    return _TAG_RE.sub("&lt;", text).encode("utf-8")


def check(name: str, data: bytes) -> Accepted:
    """The file as it will be stored, or `Refused` when its content does not fit its name."""
    kind = kind_of(name)
    if kind is None:
        raise Refused("is not a file name the ECR knows")
    if kind == "science_description":
        return Accepted(name, kind, MARKDOWN, clean_markdown(data))
    content_type = sniff_image(data)
    if content_type is None:
        raise Refused("is not a JPEG, PNG, GIF or WebP image")
    return Accepted(name, kind, content_type, data)


def find_folder(root: Path, context: Path, warn: Callable[[str], None]) -> Path | None:
    """The `ecr-meta` folder of the app's directory, else of the repository's root; never a link."""
    for folder in dict.fromkeys([context / FOLDER, root / FOLDER]):
        try:
            info = folder.lstat()
        except FileNotFoundError:
            continue
        shown = folder.relative_to(root)
        if stat.S_ISLNK(info.st_mode):
            warn(f"ecr-meta: {shown} is a symbolic link: not imported")
            return None
        if stat.S_ISDIR(info.st_mode):
            return folder
        warn(f"ecr-meta: {shown} is not a folder: not imported")
    return None


def _read(path: Path, limit: int) -> bytes:
    """A regular file's bytes (no link followed), or `Refused` past `limit` bytes."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise Refused("is a symbolic link")
    if not stat.S_ISREG(info.st_mode):
        raise Refused("is not a regular file")
    if info.st_size > limit:
        raise Refused(f"is {info.st_size} bytes, more than the {limit} allowed")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Refused(f"is more than the {limit} bytes allowed")
    return data


def collect(
    root: Path, context: Path, limits: MetaLimits, warn: Callable[[str], None]
) -> list[Accepted]:
    """Every file of the folder that passes, in the order the app document lists them."""
    folder = find_folder(root, context, warn)
    if folder is None:
        return []
    names: list[str] = []
    unexpected: list[str] = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            (names if kind_of(entry.name) else unexpected).append(entry.name)
    if unexpected:
        shown = ", ".join(repr(n) for n in sorted(unexpected)[:_UNEXPECTED_SHOWN])
        more = len(unexpected) - _UNEXPECTED_SHOWN
        warn(
            f"ecr-meta: ignored {shown}{f' and {more} more' if more > 0 else ''}: expected "
            f"{DESCRIPTION}, ecr-icon.<ext>, ecr-science-image[-N].<ext> "
            f"(<ext>: {', '.join(IMAGE_EXTENSIONS)})"
        )
    accepted: list[Accepted] = []
    total = 0
    for name in sorted(names, key=_order):
        kind = kind_of(name)
        if kind == "thumbnail" and any(a.kind == "thumbnail" for a in accepted):
            warn(f"ecr-meta: {name} not imported: the app already has an icon")
            continue
        if kind == "image" and sum(a.kind == "image" for a in accepted) >= limits.max_images:
            warn(f"ecr-meta: {name} not imported: at most {limits.max_images} images")
            continue
        try:
            found = check(name, _read(folder / name, limits.max_file_bytes))
        except Refused as refused:
            warn(f"ecr-meta: {name} not imported: it {refused}")
            continue
        except OSError as exc:
            warn(f"ecr-meta: {name} not imported: it cannot be read ({exc.strerror})")
            continue
        if total + len(found.data) > limits.max_total_bytes:
            warn(
                f"ecr-meta: {name} not imported: the folder's files pass "
                f"{limits.max_total_bytes} bytes together"
            )
            continue
        total += len(found.data)
        accepted.append(found)
    return accepted


def meta_key(request: BuildRequest, name: str) -> str:
    """Where a build's file is kept; the ECR serves only what lies here for the version it asks."""
    return f"builds/{request.repository}/{request.version}/{request.build_id}/{FOLDER}/{name}"


async def import_files(
    checkout: Checkout,
    request: BuildRequest,
    sink: FileSink,
    limits: MetaLimits,
    say: Callable[[str], None],
) -> list[MetaFile]:
    """Check the checkout's folder and store what passes; what `build.done` reports of it."""
    accepted = await asyncio.to_thread(collect, checkout.root, checkout.context, limits, say)
    stored: list[MetaFile] = []
    for found in accepted:
        key = meta_key(request, found.name)
        try:
            await sink.put_file(key, found.data, found.content_type)
        except Exception as exc:  # noqa: BLE001 - an S3 outage costs the pictures, not the build
            log.warning("ecr-meta upload failed", extra={"key": key, "error": type(exc).__name__})
            say(f"ecr-meta: {found.name} not imported: the file store did not take it")
            continue
        stored.append(
            MetaFile(
                name=found.name,
                kind=found.kind,
                content_type=found.content_type,
                size=len(found.data),
                sha256=found.sha256,
                location=sink.location(key),
            )
        )
    if stored:
        say(f"ecr-meta: imported {', '.join(f.name for f in stored)}")
    return stored
