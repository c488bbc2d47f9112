"""Which Dockerfiles the builder refuses before any step runs, and what it must pull for the rest."""

from __future__ import annotations

import pytest

from sage_builder.dockerfile import expand, plan, registry_of
from sage_builder.models import BuildFailure

OURS = "127.0.0.1:5000"
ALLOWED = ["docker.io", OURS]


def refused(text: str, build_args: dict[str, str] | None = None) -> BuildFailure:
    with pytest.raises(BuildFailure) as caught:
        plan(text, build_args or {}, ALLOWED)
    assert caught.value.error_class == "build_failed"
    assert caught.value.message.startswith("Dockerfile refused: ")
    return caught.value


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM scratch\nADD https://example.org/x.tgz /x\n",
        "FROM scratch\nadd --chown=1:1 http://10.0.0.1/x /x\n",
        "FROM scratch\nADD \\\n  https://example.org/x.tgz \\\n  /x\n",
        'FROM scratch\nADD ["https://example.org/x.tgz", "/x"]\n',
        'FROM scratch\nADD --chmod=755 [ "local", "ftp://example.org/x", "/x/" ]\n',
        "FROM scratch\nADD git@github.com:org/repo.git /src\n",
        "FROM scratch\nADD https://github.com/org/repo.git#main /src\n",
        "FROM scratch\nARG U=https://example.org/x\nADD $U /x\n",
        "FROM scratch\nARG U=https://example.org/x\nADD ${U} /x\n",
        "FROM scratch\nENV U=https://example.org/x\nADD $U /x\n",
        "FROM scratch\nARG H=example.org\nADD https://$H/x /x\n",
        "FROM scratch\nADD ${X:-https://example.org/x} /x\n",
        "FROM scratch\nADD $FROM_THE_BASE_IMAGE /x\n",
        "FROM scratch\nONBUILD ADD http://example.org/x /y\n",
        "FROM scratch\nonbuild add git@example.org:r.git /y\n",
        "# escape=`\nFROM scratch\nADD `\n  https://example.org/x /x\n",
    ],
)
def test_add_from_anything_not_provably_local_is_refused(dockerfile):
    assert "ADD" in refused(dockerfile).message


def test_add_of_a_build_arg_that_is_a_url_is_refused():
    failure = refused("FROM scratch\nARG SRC\nADD $SRC /x\n", {"SRC": "https://example.org/x"})
    assert "ADD '$SRC'" in failure.message


@pytest.mark.parametrize(
    "run",
    [
        "RUN --mount=type=bind,from=base,source=/etc,target=/x ls",
        "RUN --mount=from=base,source=link,target=/x ls",
        "RUN --mount=type=cache,from=base,source=/,target=/x ls",
        "RUN --mount=type=secret,id=s,from=base ls",
        "RUN --mount=type=ssh,from=base ls",
        'RUN --mount=type=bind,from=127.0.0.1:5000/victim/app:1.0,target=/x ["ls"]',
        "RUN --mount=type=tmpfs,target=/t --mount=type=bind,FROM=base,target=/x ls",
        "ONBUILD RUN --mount=type=bind,from=base,target=/x ls",
    ],
)
def test_mounts_from_another_stage_or_image_are_refused(run):
    failure = refused(f"FROM scratch AS base\nFROM scratch\n{run}\n")
    assert "CVE-2024-1753" in failure.message


@pytest.mark.parametrize(
    "dockerfile, reason",
    [
        ("FROM evil.example.org/x:1\n", "evil.example.org"),
        ("FROM scratch\nCOPY --from=quay.io/x/y:1 /a /b\n", "quay.io"),
        ("ARG R=evil.example.org\nFROM $R/x\n", "evil.example.org"),
        ("FROM scratch\nRUN --network=host true\n", "no network"),
        ("FROM scratch\nRUN --security=insecure true\n", "--security"),
        ("RUN true\nFROM scratch\n", "before the first FROM"),
        ("# no instructions at all\n", "no FROM"),
        ("FROM scratch\nONBUILD COPY --from=busybox /bin /bin\n", "ONBUILD COPY"),
    ],
)
def test_other_refusals_say_why(dockerfile, reason):
    assert reason in refused(dockerfile).message


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM scratch\nADD local.tgz /x\n",
        "FROM scratch\nADD --chown=1:1 a b /dst/\n",
        'FROM scratch\nADD ["a file", "/x"]\n',
        "FROM scratch\nARG F=data.tgz\nADD $F /x\n",
        "FROM scratch\nARG TARGETARCH\nADD bin-${TARGETARCH} /bin/x\n",
        "FROM scratch\nRUN --mount=type=cache,target=/root/.cache ls\n",
        "FROM scratch\nRUN --mount=type=tmpfs,target=/t ls\n",
        "FROM scratch AS base\nFROM base\nCOPY --from=base /a /b\nCOPY --from=0 /a /c\n",
        "FROM scratch\nONBUILD RUN echo later\n",
    ],
)
def test_local_adds_caches_and_stages_pass(dockerfile):
    assert plan(dockerfile, {}, ALLOWED).images == ()


def test_plan_lists_the_external_images_once_and_context_binds():
    text = (
        f"ARG BASE={OURS}/team/base:1.0\n"
        "FROM $BASE AS build\n"
        "FROM busybox:1.36\n"
        f"COPY --from={OURS}/team/tools:2 /t /t\n"
        "COPY --from=build /a /a\n"
        "RUN --mount=type=bind,source=.,target=/src ls /src\n"
        f"FROM {OURS}/team/base:1.0\n"
    )
    result = plan(text, {}, ALLOWED)
    assert result.images == (f"{OURS}/team/base:1.0", "busybox:1.36", f"{OURS}/team/tools:2")
    assert result.binds_context
    assert not plan(
        "FROM scratch\nRUN --mount=type=cache,target=/c ls\n", {}, ALLOWED
    ).binds_context


def test_build_args_choose_the_base_image_before_its_registry_is_checked():
    text = "ARG BASE=busybox\nFROM $BASE\n"
    assert plan(text, {"BASE": f"{OURS}/a/b:1"}, ALLOWED).images == (f"{OURS}/a/b:1",)
    with pytest.raises(BuildFailure):
        plan(text, {"BASE": "ghcr.io/a/b:1"}, ALLOWED)


@pytest.mark.parametrize(
    "image, registry",
    [
        ("busybox", "docker.io"),
        ("library/busybox:1", "docker.io"),
        ("127.0.0.1:5000/ns/app:1.0", "127.0.0.1:5000"),
        ("localhost/x", "localhost"),
        ("registry.sage.example.org/ns/app@sha256:ab", "registry.sage.example.org"),
    ],
)
def test_registry_of_an_image_reference(image, registry):
    assert registry_of(image) == registry


def test_expand_knows_only_what_it_was_told():
    assert expand("a-$X-${Y}", {"X": "1", "Y": "2"}) == "a-1-2"
    assert expand("$X", {"X": None}) is None
    assert expand("${X:-d}", {"X": "1"}) is None
    assert expand("$Z", {}) is None
