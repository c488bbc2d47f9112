"""Which sources the builder fetches, and which build directories and Dockerfiles it accepts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sage_builder.models import BuildFailure, BuildRequest, Checkout, Platform
from sage_builder.source import GitFetcher, check_context, check_url, locate


def failure(fn, *args) -> BuildFailure:
    with pytest.raises(BuildFailure) as caught:
        fn(*args)
    return caught.value


@pytest.mark.parametrize(
    "url",
    ["https://github.com/org/app.git", "git://127.0.0.1:9418/app.git", "http://127.0.0.1/app.git"],
)
def test_https_and_listed_insecure_hosts_are_allowed(url):
    assert check_url(url, ["127.0.0.1"]) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://github.com/org/app.git",
        "git://10.0.0.1/app.git",
        "file:///etc",
        "ext::sh -c touch% /tmp/pwned",
        "ssh://git@github.com/org/app.git",
        "/srv/repos/app.git",
    ],
)
def test_other_schemes_and_hosts_are_source_unreachable(url):
    assert failure(check_url, url, ["127.0.0.1"]).error_class == "source_unreachable"


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter22@github.com/org/app.git",
        "https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/org/app.git",
        "http://oauth2:hunter22@127.0.0.1/app.git",
    ],
)
def test_urls_with_credentials_are_refused_without_repeating_them(url):
    refused = failure(check_url, url, ["127.0.0.1"])
    assert refused.error_class == "source_unreachable"
    assert "hunter22" not in refused.message and "ghp_" not in refused.message
    assert "without credentials" in refused.message


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "app").mkdir(parents=True)
    (root / "app" / "Dockerfile").write_text("FROM scratch\n")
    (root / "Dockerfile.top").write_text("FROM scratch\n")
    (tmp_path / "secret").write_text("not yours\n")
    os.symlink("../..", root / "app" / "up")
    os.symlink(tmp_path / "secret", root / "app" / "Linked")
    os.symlink("Dockerfile", root / "app" / "Inside")
    return root


def test_dockerfile_in_directory_is_found_with_its_digest(tree):
    checkout = locate(tree, "abc", "app", "Dockerfile")
    assert checkout.context == (tree / "app").resolve()
    assert checkout.dockerfile == (tree / "app" / "Dockerfile").resolve()
    assert (
        checkout.dockerfile_digest.startswith("sha256:") and len(checkout.dockerfile_digest) == 71
    )


def test_links_and_dockerfiles_elsewhere_in_the_repository_are_allowed(tree):
    assert locate(tree, "abc", "app", "Inside").dockerfile.name == "Dockerfile"
    assert locate(tree, "abc", "app", "../Dockerfile.top").dockerfile.name == "Dockerfile.top"


@pytest.mark.parametrize(
    "directory, dockerfile",
    [
        ("app", "Missing"),
        ("nowhere", "Dockerfile"),
        ("../..", "Dockerfile"),
        ("/etc", "Dockerfile"),
        ("app/up", "Dockerfile"),
        ("app", "Linked"),
        ("app", "../../secret"),
        ("app", "/etc/hostname"),
        ("app", "."),
    ],
)
def test_missing_or_escaping_paths_are_dockerfile_missing(tree, directory, dockerfile):
    assert failure(locate, tree, "abc", directory, dockerfile).error_class == "dockerfile_missing"


def request(**source) -> BuildRequest:
    base = dict(
        build_id="b1",
        app_id="ns/app:1.0",
        url="https://example.org/app.git",
        branch=None,
        tag=None,
        commit=None,
        directory=".",
        dockerfile="Dockerfile",
        platforms=(Platform.parse("amd64"),),
    )
    return BuildRequest(**{**base, **source})


@pytest.mark.parametrize(
    "source",
    [
        {"branch": "--upload-pack=touch /tmp/x"},
        {"tag": "a..b"},
        {"branch": "has space"},
        {"commit": "not-a-sha"},
        {"commit": "--all"},
    ],
)
async def test_option_like_or_malformed_refs_are_refused_before_git_runs(tmp_path, source):
    fetcher = GitFetcher()
    with pytest.raises(BuildFailure) as caught:
        await fetcher.fetch(request(**source), tmp_path / "src", lambda _: None)
    assert caught.value.error_class == "source_unreachable"
    assert not (tmp_path / "src").exists()


def checkout_with(tmp_path: Path, dockerfile: str, link: str | None) -> Checkout:
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "Dockerfile").write_text(dockerfile)
    (root / "data").mkdir()
    if link is not None:
        os.symlink(link, root / "linked")
    return locate(root, "abc", ".", "Dockerfile")


def test_context_links_leaving_it_are_refused_when_a_step_binds_the_context(tmp_path):
    checkout = checkout_with(
        tmp_path, "FROM scratch\nRUN --mount=target=/x cat /x/linked\n", "/etc"
    )
    failed = failure(check_context, checkout)
    assert failed.error_class == "build_failed" and "linked" in failed.message


@pytest.mark.parametrize("link", ["data", "data/../data", None])
def test_contexts_whose_links_stay_inside_pass(tmp_path, link):
    check_context(checkout_with(tmp_path, "FROM scratch\n", link))
