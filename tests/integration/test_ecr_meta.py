"""An app's ecr-meta folder through the real pipeline, as the SAGE portal shows it.

A scientist's repository holds `ecr-meta/` with SAGE's three files (an icon, a science image, the
science description), plus a "science image" that is an HTML page and one past the builder's size
limit. The builder imports what passes at build time, the ECR records it from `build.done`, puts
`thumbnail`, `images` and `science_description` in the app document (SAGE's relative paths), and
serves each file at `/api/meta-files/{ns}/{name}/{version}/{file}` under the app's READ rules.
Built once for the module (amd64 only); each test looks at one side of it.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.fixtures.auth import sage_header
from tests.fixtures.pipeline import Pipeline, app_path, app_yaml
from tests.support.bus import eventually
from tests.support.pictures import png

pytestmark = pytest.mark.slow

MiB = 1 << 20


ICON = png(2, 2)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
DESCRIPTION = (
    "# Science\n\nCounts cars at an intersection; if a < b the road is quiet.\n\n"
    "<script>alert('stolen')</script>\n"
)
HTML_AS_IMAGE = b"<!doctype html><html><body onload='alert(1)'>not a picture</body></html>"
# Past the builder's default 5 MiB per file; zeros, so git and the test server carry it cheaply.
OVERSIZED = png(2, 2) + b"\x00" * (5 * MiB)


@dataclass
class Built:
    ns: str
    app_id: str
    owner: str
    stranger: str

    @property
    def files(self) -> str:
        return f"/api/meta-files/{app_path(self.app_id)}"


@pytest.fixture(scope="module")
async def built(pipeline: Pipeline, make_user) -> Built:
    """The app submitted by its owner; done once the ECR shows its thumbnail."""
    s = uuid.uuid4().hex[:8]
    owner = await make_user(f"scientist-{s}")
    stranger = await make_user(f"stranger-{s}")
    url, _ = pipeline.publish_source(
        f"meta-{s}",
        files={
            "ecr-meta/ecr-icon.png": ICON,
            "ecr-meta/ecr-science-image.jpg": JPEG,
            "ecr-meta/ecr-science-description.md": DESCRIPTION,
            "ecr-meta/ecr-science-image-1.png": HTML_AS_IMAGE,
            "ecr-meta/ecr-science-image-2.png": OVERSIZED,
            "ecr-meta/notes.txt": "not for the portal\n",
        },
    )
    ns = f"meta{s}"
    app_id = f"{ns}/counter:1.0.0"
    result = await pipeline.submit(app_yaml(ns, "counter", url), token=owner)
    assert result.code == 0, result.err

    async def shown() -> bool:
        status, app = await pipeline.api("GET", f"/api/apps/{app_path(app_id)}", token=owner)
        assert status == 200, app
        assert app["state"] != "build_failed", app
        return app.get("thumbnail") is not None

    await eventually(shown, within=180, every=0.3)
    return Built(ns, app_id, owner, stranger)


async def fetch(
    pipeline: Pipeline, path: str, token: str | None = None, **headers: str
) -> tuple[int, CIMultiDict[str], bytes]:
    if token:
        headers.update(sage_header(token))
    async with (
        aiohttp.ClientSession() as http,
        http.get(pipeline.url + path, headers=headers) as resp,
    ):
        return resp.status, resp.headers.copy(), await resp.read()


async def test_app_document_names_the_files_as_sage_did(pipeline: Pipeline, built: Built) -> None:
    prefix = app_path(built.app_id)
    status, app = await pipeline.api("GET", f"/api/apps/{prefix}", token=built.owner)
    assert status == 200
    assert app["thumbnail"] == f"{prefix}/ecr-icon.png"
    assert app["images"] == [f"{prefix}/ecr-science-image.jpg"]
    assert app["science_description"] == f"{prefix}/ecr-science-description.md"
    # The portal's app page reads them from the repository's versions.
    status, repo = await pipeline.api(
        "GET", f"/api/repositories/{built.ns}/counter", token=built.owner
    )
    assert status == 200 and repo["versions"][0]["thumbnail"] == f"{prefix}/ecr-icon.png"


async def test_files_are_served_with_their_content_type(pipeline: Pipeline, built: Built) -> None:
    status, headers, body = await fetch(pipeline, f"{built.files}/ecr-icon.png", built.owner)
    assert (status, headers["Content-Type"], body) == (200, "image/png", ICON)
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, headers, body = await fetch(
        pipeline, f"{built.files}/ecr-science-image.jpg", built.owner
    )
    assert (status, headers["Content-Type"], body) == (200, "image/jpeg", JPEG)
    # Straight from the ECR (the test gateway re-chunks): the length is known before the body.
    async with (
        aiohttp.ClientSession(headers=sage_header(built.owner)) as http,
        http.head(f"{pipeline.ecr.url}{built.files}/ecr-icon.png") as resp,
    ):
        assert resp.status == 200 and resp.headers["Content-Length"] == str(len(ICON))


async def test_the_description_is_markdown_with_html_made_harmless(
    pipeline: Pipeline, built: Built
) -> None:
    status, headers, body = await fetch(
        pipeline, f"{built.files}/ecr-science-description.md", built.owner
    )
    assert status == 200 and headers["Content-Type"] == "text/markdown; charset=utf-8"
    text = body.decode()
    assert text.startswith("# Science\n\nCounts cars at an intersection; if a < b")
    assert "<script" not in text and "&lt;script>" in text


async def test_wrong_type_and_oversized_files_are_refused_and_the_log_says_why(
    pipeline: Pipeline, built: Built
) -> None:
    for name in ("ecr-science-image-1.png", "ecr-science-image-2.png", "notes.txt"):
        status, _, _ = await fetch(pipeline, f"{built.files}/{name}", built.owner)
        assert status == 404, name
    status, _, log = await fetch(
        pipeline, f"/api/apps/{app_path(built.app_id)}/logs?format=text", built.owner
    )
    text = log.decode()
    assert status == 200
    assert "ecr-science-image-1.png not imported: it is not a JPEG, PNG, GIF or WebP image" in text
    assert "ecr-science-image-2.png not imported: it is " in text and "allowed" in text
    assert "ignored 'notes.txt'" in text
    assert "imported ecr-science-description.md, ecr-icon.png, ecr-science-image.jpg" in text


async def test_private_apps_files_are_404_to_strangers_until_public(
    pipeline: Pipeline, built: Built
) -> None:
    icon = f"{built.files}/ecr-icon.png"
    assert (await fetch(pipeline, icon))[0] == 404
    assert (await fetch(pipeline, icon, built.stranger))[0] == 404
    public = {
        "operation": "add",
        "granteeType": "GROUP",
        "grantee": "AllUsers",
        "permission": "READ",
    }
    status, _ = await pipeline.api(
        "PUT", f"/api/permissions/{built.ns}/counter", token=built.owner, json=public
    )
    assert status == 200
    status, headers, body = await fetch(pipeline, icon)  # the portal's <img>: no token
    assert (status, headers["Content-Type"], body) == (200, "image/png", ICON)


async def test_unknown_and_escaping_names_are_404(pipeline: Pipeline, built: Built) -> None:
    for name in ("ecr-icon.jpg", "..%2F..%2F1.0.0.log", "%2e%2e"):
        status, _, _ = await fetch(pipeline, f"{built.files}/{name}", built.owner)
        assert status == 404, name


async def test_a_current_copy_is_not_sent_again(pipeline: Pipeline, built: Built) -> None:
    icon = f"{built.files}/ecr-icon.png"
    _, headers, _ = await fetch(pipeline, icon, built.owner)
    status, _, body = await fetch(pipeline, icon, built.owner, **{"If-None-Match": headers["ETag"]})
    assert (status, body) == (304, b"")


async def test_a_rebuild_without_the_folder_takes_the_files_away(
    pipeline: Pipeline, built: Built
) -> None:
    """Runs last: the files shown are always those of the version's newest finished build."""
    source = f"meta-{built.ns.removeprefix('meta')}"
    shutil.rmtree(pipeline.sources / source / "ecr-meta")
    pipeline.publish_source(source, message="no pictures any more")
    path = app_path(built.app_id)
    status, _ = await pipeline.api("POST", f"/api/builds/{path}", token=built.owner)
    assert status == 200

    async def gone() -> bool:
        _, app = await pipeline.api("GET", f"/api/apps/{path}", token=built.owner)
        return app["build_number"] == 2 and app["image"] is not None and app["thumbnail"] is None

    await eventually(gone, within=180, every=0.3)
    _, app = await pipeline.api("GET", f"/api/apps/{path}", token=built.owner)
    assert (app["images"], app["science_description"]) == (None, None)
    assert (await fetch(pipeline, f"{built.files}/ecr-icon.png", built.owner))[0] == 404
