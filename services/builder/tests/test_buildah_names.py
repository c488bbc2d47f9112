"""Image names in a repository's buildah store, with builds beside each other (real, sandboxed).

Two builds of one repository whose last step came from the layer cache end on the same image.
Each named it (`-t`), and buildah 1.28 writes an image's names back whole, so one build's name
could vanish under it: "locating just-written image ...: image not known" (seen under a
database restart, with 20 builds of one repository queued). Builds now refer to their images by
id, and the names a build does make are dropped only when no build uses the store: an image
whose last name goes is deleted, even one a build beside it just took from its cache."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from sage_builder.buildah import BuildahBackend
from sage_builder.models import ArchResult, BuildRequest, Checkout, Platform
from tests.support.builder.servers import BUSYBOX

AMD64 = Platform.parse("linux/amd64")


def request(build_id: str) -> BuildRequest:
    return BuildRequest(
        build_id=build_id,
        app_id="alice/app:1.0",
        url="git://127.0.0.1/app.git",
        branch="main",
        tag=None,
        commit=None,
        directory=".",
        dockerfile="Dockerfile",
        platforms=(AMD64,),
    )


async def image(backend: BuildahBackend, store: Path, name: str, cmd: str) -> str:
    """A FROM-scratch image named `name`; its id (`cmd` makes its config differ)."""
    made = await backend._run(store, ["from", "--quiet", "scratch"], None)
    container = made.output.strip().splitlines()[-1]
    await backend._run(store, ["config", "--cmd", cmd, container], None)
    done = await backend._run(store, ["commit", "--quiet", container, name], None)
    await backend._run(store, ["rm", container], None)
    return done.output.strip().splitlines()[-1]


async def names(backend: BuildahBackend, store: Path) -> dict[str, str]:
    """Each name in the store, and the id of the image it names."""
    done = await backend._run(
        store,
        ["images", "--noheading", "--no-trunc", "--format", "{{.Name}}:{{.Tag}} {{.ID}}"],
        None,
    )
    return dict(line.split() for line in done.output.splitlines() if line.strip())


@pytest.fixture
def backend() -> BuildahBackend:
    return BuildahBackend()  # as the builder ships it: sandboxed, overlay where it works


async def test_release_keeps_every_image_a_build_beside_it_may_reuse(
    backend: BuildahBackend, tmp_path: Path
) -> None:
    a = await image(backend, tmp_path, "localhost/sage-build:linux-amd64-a", "a")
    c = await image(backend, tmp_path, "localhost/sage-build:linux-amd64-c", "c")
    built_a = ArchResult(AMD64, "localhost/sage-build:linux-amd64-a", False)
    built_c = ArchResult(AMD64, "localhost/sage-build:linux-amd64-c", False)
    # Two builds released one after the other: the cache name moves from a's image to c's. Had a's
    # own name gone too, its image would have gone with it, under a build that reuses it.
    await backend.release(request("a"), [built_a], tmp_path)
    await backend.release(request("c"), [built_c], tmp_path)
    found = await names(backend, tmp_path)
    assert found["localhost/sage-build:linux-amd64-a"].removeprefix("sha256:") == a.removeprefix(
        "sha256:"
    )
    assert found["localhost/sage-cache:linux-amd64"] == found["localhost/sage-build:linux-amd64-c"]
    assert found["localhost/sage-build:linux-amd64-c"].removeprefix("sha256:") == c.removeprefix(
        "sha256:"
    )


async def test_tidy_drops_the_builds_names_and_keeps_the_cache(
    backend: BuildahBackend, tmp_path: Path
) -> None:
    await image(backend, tmp_path, "localhost/sage-build:linux-amd64-a", "a")
    await image(backend, tmp_path, "localhost/sage-build:linux-amd64-b", "b")
    index = "localhost/sage-build:index-b"
    await backend._run(tmp_path, ["manifest", "create", index], None)
    await backend._run(
        tmp_path, ["manifest", "add", index, "localhost/sage-build:linux-amd64-b"], None
    )
    built_b = ArchResult(AMD64, "localhost/sage-build:linux-amd64-b", False)
    await backend.release(request("b"), [built_b], tmp_path)
    kept = (await names(backend, tmp_path))["localhost/sage-cache:linux-amd64"]

    await backend.tidy(tmp_path)

    # a's image had no other name: it goes; b's stays under the cache name; the index goes.
    assert await names(backend, tmp_path) == {"localhost/sage-cache:linux-amd64": kept}


async def test_builds_ending_on_one_cached_image_at_once_each_get_it(
    backend: BuildahBackend, tmp_path: Path
) -> None:
    context = tmp_path / "src"
    context.mkdir()
    shutil.copy(BUSYBOX["amd64"], context / "busybox")
    (context / "Dockerfile").write_text('FROM scratch\nCOPY busybox /bin/busybox\nCMD ["sh"]\n')
    checkout = Checkout(context, "c0ffee", context, context / "Dockerfile", "")
    store = tmp_path / "store"
    first = await backend.build(request("first"), checkout, AMD64, store, lambda _: None)
    for round_ in range(10):
        # Builds ending on the cached image while finished builds point the cache name at it.
        builds = [
            backend.build(request(f"r{round_}b{n}"), checkout, AMD64, store, lambda _: None)
            for n in range(3)
        ]
        releases = [backend.release(request("first"), [first], store) for _ in range(3)]
        built = (await asyncio.gather(*builds, *releases))[:3]
        assert {await image_id(backend, store, b.local_ref) for b in built} == {
            await image_id(backend, store, first.local_ref)
        }


async def image_id(backend: BuildahBackend, store: Path, ref: str) -> str:
    """The id of the image `ref` names (or is)."""
    fmt = ["--noheading", "--no-trunc", "--format", "{{.ID}}"]
    done = await backend._run(store, ["images", *fmt, ref], None)
    assert done.returncode == 0, done.output
    return done.output.strip().removeprefix("sha256:")
