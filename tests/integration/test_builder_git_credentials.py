"""Git credentials never reach a build's log or result: the builder refuses a source URL with
credentials (an app stored before the ECR refused them, or a forged event), and a URL with a
password that git itself prints (a submodule's, from the repository) is scrubbed.

The real builder on the run's Postgres, RabbitMQ and S3, a `git daemon` on loopback.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.support.builder import (
    Harness,
    commit_all,
    delete_queues,
    free_port,
    git,
    read_log,
    running_builder,
    scratch_app,
)

pytestmark = pytest.mark.slow

SECRET = "s3cret-pw-0123"
TOKEN = "ghp_TESTONLYabcdefghijklmnopqrstuvwxyz01"


def app_id(name: str) -> str:
    return f"tests/{name}-{uuid.uuid4().hex[:6]}:1.0"


@pytest.fixture(scope="module")
def private_urls() -> tuple[str, str]:
    """http remotes with a password and with a token as user, where nothing answers."""
    port = free_port()
    return (
        f"http://deploy:{SECRET}@127.0.0.1:{port}/private.git",
        f"http://{TOKEN}@127.0.0.1:{port}/other.git",
    )


@pytest.fixture(scope="module")
def repos(git_server, private_urls, tmp_path_factory) -> None:
    work = tmp_path_factory.mktemp("apps")
    sub = work / "sub"
    sub.mkdir()
    (sub / "hello.txt").write_text("hello\n")
    commit_all(sub, "submodule content")
    git_server.publish("sub", sub)
    app = work / "withsecret"
    scratch_app(app, "true")
    commit_all(app, "app")
    # submodules' remotes as a careless author writes them: with a password, with a token
    for path, url in zip(("vendor", "vendor2"), private_urls, strict=True):
        git(app, "submodule", "add", "-q", git_server.url("sub"), path)
        git(app, "config", "-f", ".gitmodules", f"submodule.{path}.url", url)
    commit_all(app, "submodules behind credentials")
    git_server.publish("withsecret", app)


@pytest.fixture(scope="module")
async def harness(amqp_url, builder_config, git_server, repos, tmp_path_factory) -> AsyncIterator:
    config = builder_config(tmp_path_factory.mktemp("builder"), uuid.uuid4().hex[:8])
    try:
        async with (
            running_builder(config),
            Harness.open(amqp_url, config.exchange, git_server.url) as harness,
        ):
            yield harness
    finally:
        await delete_queues(amqp_url, config)


async def test_git_errors_naming_urls_with_credentials_are_scrubbed_from_the_log(
    harness, s3_server, private_urls
):
    build_id = await harness.submit(app_id("withsecret"), "withsecret")
    done = await harness.events.done(build_id, within=120)
    assert (done.status, done.error_class) == ("failure", "source_unreachable"), done.error
    text = read_log(s3_server.client(), done.log_location)
    # git printed the submodules' URLs; the log keeps where they were, not the credentials
    for url in private_urls:
        assert f"http://***@{url.split('@', 1)[1]}" in text, text
    for secret in (SECRET, TOKEN):
        assert secret not in text
        assert secret not in (done.error or "")
        assert all(secret not in line for line in done.log_tail)


async def test_a_source_url_with_credentials_is_refused_and_not_logged(harness, s3_server):
    url = f"http://oauth2:{SECRET}@127.0.0.1:{free_port()}/app.git"
    build_id = await harness.submit(app_id("refused"), "withsecret", url=url)
    done = await harness.events.done(build_id, within=60)
    assert (done.status, done.error_class) == ("failure", "source_unreachable")
    assert "without credentials" in (done.error or "")
    assert done.commit is None  # nothing was fetched
    text = read_log(s3_server.client(), done.log_location)
    assert "http://***@127.0.0.1:" in text and SECRET not in text
