"""The rules of an app's ecr-meta folder: which names count, what content passes, what is refused."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from sage_builder.backend import FakeBackend
from sage_builder.buildlog import MemoryLogSink
from sage_builder.cache import LayerCache
from sage_builder.metafiles import (
    MetaLimits,
    Refused,
    check,
    clean_markdown,
    collect,
    kind_of,
    sniff_image,
)
from sage_builder.models import BuildRequest, Platform
from sage_builder.registry import RegistryClient
from sage_builder.service import Builder, Job
from sage_builder.source import GitFetcher
from tests.support.pictures import png

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 32
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L" + b"\x00" * 14


def folder(root: Path, files: dict[str, bytes | str], where: str = ".") -> Path:
    meta = root / where / "ecr-meta"
    meta.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (meta / name).write_bytes(data)
    return meta


def gather(root: Path, context: Path | None = None, **limits: int):
    said: list[str] = []
    found = collect(root, context or root, MetaLimits(**limits), said.append)
    return found, said


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("ecr-science-description.md", "science_description"),
        ("ecr-icon.jpg", "thumbnail"),
        ("ecr-icon.png", "thumbnail"),
        ("ecr-icon.webp", "thumbnail"),
        ("ecr-science-image.jpg", "image"),
        ("ecr-science-image-2.jpeg", "image"),
        ("ecr-icon.svg", None),
        ("ecr-icon.JPG", None),
        ("ecr-science-image-a.png", None),
        ("README.md", None),
        ("../ecr-icon.jpg", None),
    ],
)
def test_kind_follows_sages_file_names(name, kind):
    assert kind_of(name) == kind


def test_images_are_recognised_by_their_content():
    assert sniff_image(png()) == "image/png"
    assert sniff_image(JPEG) == "image/jpeg"
    assert sniff_image(GIF) == "image/gif"
    assert sniff_image(WEBP) == "image/webp"
    assert sniff_image(b"<svg xmlns='http://www.w3.org/2000/svg'/>") is None
    assert sniff_image(b"<html><script>alert(1)</script>") is None


def test_an_image_name_with_other_content_is_refused():
    with pytest.raises(Refused, match="not a JPEG, PNG, GIF or WebP image"):
        check("ecr-icon.jpg", b"<html><body onload=alert(1)></body></html>")
    with pytest.raises(Refused):
        check("ecr-science-image.png", b"\x7fELF\x02\x01\x01" + b"\x00" * 64)


def test_content_type_comes_from_the_content_not_the_name():
    assert check("ecr-icon.jpg", png()).content_type == "image/png"


def test_markdown_keeps_markdown_and_turns_html_tags_into_text():
    text = "# Science\n\nIf a < b then *more*.\n<script>alert(1)</script>\n<img src=x onerror=y>\n"
    cleaned = clean_markdown(text.encode()).decode()
    assert cleaned.startswith("# Science\n\nIf a < b then *more*.\n")
    assert "<script" not in cleaned and "<img" not in cleaned
    assert "&lt;script>alert(1)&lt;/script>" in cleaned


def test_markdown_must_be_utf8_text():
    with pytest.raises(Refused, match="not UTF-8"):
        clean_markdown(b"\xff\xfe# h\x00i")
    with pytest.raises(Refused, match="NUL"):
        clean_markdown(b"# hi\x00there")
    assert clean_markdown("\ufeff# Café".encode()) == "# Café".encode()


def test_the_three_sage_files_are_collected_in_document_order(tmp_path):
    folder(
        tmp_path,
        {
            "ecr-science-image.jpg": JPEG,
            "ecr-icon.jpg": JPEG,
            "ecr-science-description.md": "# What it does\n",
        },
    )
    found, said = gather(tmp_path)
    assert [(f.name, f.kind, f.content_type) for f in found] == [
        ("ecr-science-description.md", "science_description", "text/markdown; charset=utf-8"),
        ("ecr-icon.jpg", "thumbnail", "image/jpeg"),
        ("ecr-science-image.jpg", "image", "image/jpeg"),
    ]
    assert found[1].sha256 == hashlib.sha256(JPEG).hexdigest()
    assert said == []


def test_no_folder_is_no_files_and_no_warning(tmp_path):
    assert gather(tmp_path) == ([], [])


def test_the_apps_directory_folder_wins_over_the_repository_roots(tmp_path):
    folder(tmp_path, {"ecr-icon.png": png()})
    folder(tmp_path, {"ecr-icon.gif": GIF}, where="app")
    found, _ = gather(tmp_path, tmp_path / "app")
    assert [f.name for f in found] == ["ecr-icon.gif"]
    found, _ = gather(tmp_path, tmp_path / "other")  # no folder there: the root's
    assert [f.name for f in found] == ["ecr-icon.png"]


def test_oversized_files_are_refused_and_the_rest_kept(tmp_path):
    folder(tmp_path, {"ecr-icon.png": png(), "ecr-science-image.png": png(64, 64)})
    found, said = gather(tmp_path, max_file_bytes=len(png()) + 10)
    assert [f.name for f in found] == ["ecr-icon.png"]
    assert len(said) == 1 and "ecr-science-image.png not imported" in said[0]
    assert "more than the" in said[0]


def test_the_folders_total_is_limited(tmp_path):
    folder(tmp_path, {"ecr-science-image.png": png(), "ecr-science-image-1.png": png()})
    found, said = gather(tmp_path, max_total_bytes=len(png()) + 1)
    assert [f.name for f in found] == ["ecr-science-image.png"]
    assert "ecr-science-image-1.png not imported" in said[0] and "together" in said[0]


def test_images_are_counted_and_ordered_by_number(tmp_path):
    names = ["ecr-science-image-10.png", "ecr-science-image-2.png", "ecr-science-image.png"]
    folder(tmp_path, dict.fromkeys(names, png()))
    found, said = gather(tmp_path, max_images=2)
    assert [f.name for f in found] == ["ecr-science-image.png", "ecr-science-image-2.png"]
    assert "at most 2 images" in said[0]


def test_one_icon_only(tmp_path):
    folder(tmp_path, {"ecr-icon.jpg": JPEG, "ecr-icon.png": png()})
    found, said = gather(tmp_path)
    assert [f.name for f in found] == ["ecr-icon.jpg"]
    assert "ecr-icon.png not imported: the app already has an icon" in said[0]


def test_links_and_special_files_are_refused(tmp_path):
    meta = folder(tmp_path, {"ecr-icon.png": png()})
    secret = tmp_path / "outside.md"
    secret.write_text("# the builder's own file\n")
    os.symlink(secret, meta / "ecr-science-description.md")
    os.mkdir(meta / "ecr-science-image.png")
    os.mkfifo(meta / "ecr-science-image-1.png")
    found, said = gather(tmp_path)
    assert [f.name for f in found] == ["ecr-icon.png"]
    assert any("ecr-science-description.md not imported: it is a symbolic link" in s for s in said)
    assert any("ecr-science-image.png not imported: it is not a regular file" in s for s in said)
    assert any("ecr-science-image-1.png not imported: it is not a regular file" in s for s in said)


def test_a_linked_folder_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    folder(elsewhere, {"ecr-icon.png": png()})
    repo = tmp_path / "repo"
    repo.mkdir()
    os.symlink(elsewhere / "ecr-meta", repo / "ecr-meta")
    found, said = gather(repo)
    assert found == [] and said == ["ecr-meta: ecr-meta is a symbolic link: not imported"]


def test_unexpected_names_are_named_in_a_warning(tmp_path):
    folder(tmp_path, {"ecr-icon.svg": "<svg/>", "notes.txt": "x", "ecr-icon.png": png()})
    found, said = gather(tmp_path)
    assert [f.name for f in found] == ["ecr-icon.png"]
    assert "ignored 'ecr-icon.svg', 'notes.txt'" in said[0]


class MetaFetcher(GitFetcher):
    """A checkout holding a Dockerfile and an ecr-meta folder with one bad file, without git."""

    async def fetch(self, request, dest: Path, log, cache=None) -> str:
        write_checkout(dest)
        return "c0ffee" * 6 + "abcd"


def write_checkout(dest: Path) -> None:
    dest.mkdir(parents=True)
    (dest / "Dockerfile").write_text("FROM scratch\n")
    folder(dest, {"ecr-icon.png": png(), "ecr-science-image.jpg": b"not a picture"})


class IndexOf(RegistryClient):
    """A registry whose index holds whatever the fake backend pushed."""

    def __init__(self) -> None:
        super().__init__("registry.test", token_url="http://auth.test", service="s", creds=None)

    async def index(self, repository: str, reference: str) -> tuple[str, dict[str, str]]:
        return "sha256:index", {"linux/amd64": "sha256:amd64"}


def request() -> BuildRequest:
    return BuildRequest(
        build_id="b1",
        app_id="ns/app:1.0",
        url="https://example.org/app.git",
        branch="main",
        tag=None,
        commit=None,
        directory=".",
        dockerfile="Dockerfile",
        platforms=(Platform.parse("linux/amd64"),),
    )


def builder(tmp_path: Path, backend: FakeBackend, sink: MemoryLogSink) -> Builder:
    return Builder(
        backend=backend,
        fetcher=MetaFetcher(),
        cache=LayerCache(tmp_path / "cache", 10**9),
        sink=sink,
        registry="registry.test",
        registry_client=IndexOf(),
        creds=None,
        work_dir=tmp_path,
        timeout=30,
    )


async def test_build_done_lists_the_stored_files_and_the_log_names_the_refused(tmp_path):
    sink = MemoryLogSink()
    done = await builder(tmp_path, FakeBackend(), sink).run(request(), Job("b1", "ns/app:1.0"))
    assert done.status == "success"
    [icon] = done.meta_files
    key = "builds/ns/app/1.0/b1/ecr-meta/ecr-icon.png"
    assert (icon.name, icon.kind, icon.content_type) == ("ecr-icon.png", "thumbnail", "image/png")
    assert icon.location == f"memory://{key}" and icon.size == len(png())
    assert sink.objects[key] == png() and sink.content_types[key] == "image/png"
    log = sink.objects["builds/ns/app/1.0/b1.log"].decode()
    assert "ecr-meta: ecr-science-image.jpg not imported: it is not a JPEG" in log
    assert "ecr-meta: imported ecr-icon.png" in log


async def test_a_failed_build_still_reports_the_files_it_stored(tmp_path):
    backend = FakeBackend()
    backend.fail_build = "RUN exited 3"
    done = await builder(tmp_path, backend, MemoryLogSink()).run(request(), Job("b1", "a:1"))
    assert done.status == "failure" and [f.name for f in done.meta_files] == ["ecr-icon.png"]


class BrokenSink(MemoryLogSink):
    async def put_file(self, key: str, data: bytes, content_type: str) -> None:
        raise ConnectionError("S3 is down")


async def test_a_file_store_outage_costs_the_files_not_the_build(tmp_path):
    sink = BrokenSink()
    done = await builder(tmp_path, FakeBackend(), sink).run(request(), Job("b1", "ns/app:1.0"))
    assert done.status == "success" and done.meta_files == []
    assert "the file store did not take it" in sink.objects["builds/ns/app/1.0/b1.log"].decode()
