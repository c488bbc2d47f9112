"""What the ECR keeps of `build.done.meta_files`, and how the app document names the files."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sage_common.schemas import BuildDone, MetaFile
from sage_ecr.records import App
from sage_ecr.service_meta import accepted, split_location
from sage_ecr.views import meta_fields

NOW = datetime(2026, 1, 1, tzinfo=UTC)
APP = App(1, "lab", "counter", "1.0.0", "1.0.0", "someone", {}, "submitted", NOW, NOW)
BUILD = uuid.UUID("5b0c2f3e-7d1a-4c1e-9a7b-2a3f8d9e6c11")
SHA = "ab" * 32


def meta(name: str, kind: str, content_type: str = "image/png", **kw: str) -> MetaFile:
    location = f"s3://sage-build-logs/builds/lab/counter/1.0.0/{BUILD}/ecr-meta/{name}"
    fields = {"location": location, "sha256": SHA, **kw}
    return MetaFile(name=name, kind=kind, content_type=content_type, size=10, **fields)


def test_files_the_builder_stored_for_the_build_are_kept_in_order():
    files = [
        meta("ecr-science-description.md", "science_description", "text/markdown; charset=utf-8"),
        meta("ecr-icon.png", "thumbnail"),
        meta("ecr-science-image.jpg", "image", "image/jpeg"),
    ]
    rows = accepted(APP, BUILD, files)
    assert [(r.file_name, r.kind, r.build_id) for r in rows] == [
        ("ecr-science-description.md", "science_description", BUILD),
        ("ecr-icon.png", "thumbnail", BUILD),
        ("ecr-science-image.jpg", "image", BUILD),
    ]


def test_files_stored_elsewhere_or_served_as_html_are_dropped():
    other_build = uuid.uuid4()
    files = [
        meta(
            "ecr-icon.png", "thumbnail", location="s3://b/builds/lab/counter/1.0.0/x/ecr-icon.png"
        ),
        meta(
            "ecr-science-image.png",
            "image",
            location=f"s3://b/builds/lab/other/1.0.0/{BUILD}/ecr-meta/ecr-science-image.png",
        ),
        meta(
            "ecr-science-image-1.png",
            "image",
            location=f"s3://b/builds/lab/counter/1.0.0/{other_build}/ecr-meta/ecr-science-image-1.png",
        ),
        meta("ecr-science-image-2.png", "image", location="file:///etc/passwd"),
        meta("ecr-science-image-3.png", "image", "text/html"),
        meta("ecr-science-image-4.svg", "image", "image/svg+xml"),
        meta("../../secret.png", "image"),
        meta("ecr-science-image-5.png", "script"),
        meta("ecr-science-image-6.png", "image", sha256="nope"),
    ]
    assert accepted(APP, BUILD, files) == []


def test_one_icon_and_one_entry_per_name():
    files = [
        meta("ecr-icon.png", "thumbnail"),
        meta("ecr-icon.jpg", "thumbnail", "image/jpeg"),
        meta("ecr-science-image.png", "image"),
        meta("ecr-science-image.png", "image"),
    ]
    assert [r.file_name for r in accepted(APP, BUILD, files)] == [
        "ecr-icon.png",
        "ecr-science-image.png",
    ]


def test_the_document_names_files_as_sage_did_relative_to_meta_files():
    files = [
        meta("ecr-science-description.md", "science_description", "text/markdown; charset=utf-8"),
        meta("ecr-icon.png", "thumbnail"),
        meta("ecr-science-image.jpg", "image", "image/jpeg"),
        meta("ecr-science-image-2.jpg", "image", "image/jpeg"),
    ]
    assert meta_fields(APP, accepted(APP, BUILD, files)) == {
        "thumbnail": "lab/counter/1.0.0/ecr-icon.png",
        "images": [
            "lab/counter/1.0.0/ecr-science-image.jpg",
            "lab/counter/1.0.0/ecr-science-image-2.jpg",
        ],
        "science_description": "lab/counter/1.0.0/ecr-science-description.md",
    }


def test_an_app_without_files_shows_nulls_as_sage_did():
    assert meta_fields(APP, []) == {"thumbnail": None, "images": None, "science_description": None}


def test_old_build_done_events_without_meta_files_still_parse():
    done = BuildDone.model_validate(
        {"app_id": "lab/counter:1.0.0", "build_id": "b", "status": "success"}
    )
    assert done.meta_files == []


def test_locations_split_only_as_s3_urls():
    assert split_location("s3://bucket/a/b.png") == ("bucket", "a/b.png")
    assert split_location("s3://bucket") is None
    assert split_location("https://bucket/a") is None
