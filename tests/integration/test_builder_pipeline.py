"""The builder end to end: app.submitted in, build.done out, images in a real token-auth registry.

Real parts only: the builder's app in-process on the run's Postgres and RabbitMQ, buildah with
qemu for arm64, Debian's docker-registry trusting the test auth service's tokens, a `git daemon`
on loopback, and the S3 server the build logs go to. One two-architecture build is made once and
looked at by several tests; every other build is amd64 only, to stay quick on two cores.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sage_builder.config import Config
from sage_builder.registry import Credentials, RegistryClient
from sage_common.schemas import BuildDone
from tests.fixtures.builder import log_has
from tests.support.builder import (
    Harness,
    RegistryReader,
    commit_all,
    delete_queues,
    free_port,
    git,
    read_log,
    running_builder,
    scratch_app,
    until,
)

pytestmark = pytest.mark.slow


def app_id(name: str) -> str:
    return f"tests/{name}-{uuid.uuid4().hex[:6]}:1.0"


@pytest.fixture(scope="module")
def suffix() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def repos(git_server, tmp_path_factory) -> dict[str, str]:
    """The test apps, served by the git server; name -> commit of what is built by default."""
    work = tmp_path_factory.mktemp("apps")
    commits = {}
    run = 'uname -m > /arch; echo "$GREETING" > /greeting; echo built-for-$(uname -m)'
    scratch_app(work / "multi", run, args=("GREETING",))
    commits["multi"] = commit_all(work / "multi", "multi-arch app", tag="v1")
    git_server.publish("multi", work / "multi")

    peek = work / "peek"
    scratch_app(peek, "true")
    (peek / "Dockerfile").write_text(
        "FROM scratch\nARG TARGETARCH\nCOPY busybox-${TARGETARCH} /bin/busybox\n"
        'RUN --mount=type=bind,source=hostetc,target=/x ["/bin/busybox", "cat", "/x/passwd"]\n'
    )
    os.symlink("/etc", peek / "hostetc")
    commit_all(peek, "a link to the host's /etc, bind-mounted")
    git_server.publish("peek", peek)

    scratch_app(work / "fails", "echo about-to-fail; exit 3")
    commits["fails"] = commit_all(work / "fails", "a RUN that fails")
    git_server.publish("fails", work / "fails")

    scratch_app(work / "slow", "echo quick-build > /done")
    commits["quick"] = commit_all(work / "slow", "quick", tag="quick")
    scratch_app(work / "slow", "echo sleeping-now; sleep 120")
    commits["slow"] = commit_all(work / "slow", "slow")
    git_server.publish("slow", work / "slow")

    sub = work / "sub"
    sub.mkdir()
    (sub / "hello.txt").write_text("hello from a submodule\n")
    commit_all(sub, "submodule content")
    git_server.publish("sub", sub)
    nested = work / "nested"
    scratch_app(
        nested / "app", "cat /hello.txt > /from-sub", steps=("COPY vendor/hello.txt /hello.txt",)
    )
    commit_all(nested, "nested app")
    git(nested / "app", "submodule", "add", "-q", git_server.url("sub"), "vendor")
    os.symlink("../../..", nested / "outside")
    os.symlink("/etc/hostname", nested / "app" / "Linked.Dockerfile")
    commits["nested"] = commit_all(nested, "with a submodule and escaping links", branch="main")
    git_server.publish("nested", nested)
    return commits


@pytest.fixture(scope="module")
async def stack(
    amqp_url, builder_config, git_server, repos, suffix, tmp_path_factory
) -> AsyncIterator[tuple[Harness, Config, web.Application]]:
    config = builder_config(tmp_path_factory.mktemp("builder"), suffix)
    try:
        async with (
            running_builder(config) as app,
            Harness.open(amqp_url, config.exchange, git_server.url) as harness,
        ):
            yield harness, config, app
    finally:
        await delete_queues(amqp_url, config)


@pytest.fixture(scope="module")
def reader_for(registry_server, auth_url, service_secrets):
    """A RegistryReader holding a pull token for one repository (asked as the builder account)."""

    async def make(repository: str) -> RegistryReader:
        client = RegistryClient(
            registry_server.address,
            token_url=f"{auth_url}/auth/registry/token",
            service="sage-registry",
            creds=Credentials("builder", service_secrets["builder"]),
        )
        async with aiohttp.ClientSession() as session:
            token = await client.token(session, repository, "pull")
        return RegistryReader(registry_server.address, token)

    return make


# -- the two-architecture build, made once ---------------------------------------------------


@pytest.fixture(scope="module")
async def multi(stack, repos) -> tuple[str, BuildDone]:
    harness, _, _ = stack
    ident = app_id("multi")
    build_id = await harness.submit(
        ident,
        "multi",
        tag="v1",
        architectures=["linux/amd64", "linux/arm64"],
        build_args={"GREETING": "hello-from-args"},
    )
    return ident, await harness.events.done(build_id, within=300)


async def test_two_arch_build_pushes_an_index_the_registry_serves_with_both(
    multi, reader_for, stack
):
    ident, done = multi
    assert done.status == "success", (done.error_class, done.error, done.log_tail)
    repository, version = ident.rsplit(":", 1)
    assert done.image == f"{stack[1].registry}/{repository}:{version}"
    reader = await reader_for(repository)
    index, media = await reader.manifest(repository, version)
    assert media == "application/vnd.oci.image.index.v1+json"
    platforms = {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
        for m in index["manifests"]
    }
    assert platforms == {img.architecture: img.digest for img in done.images}
    assert set(platforms) == {"linux/amd64", "linux/arm64"}
    raw, _ = await reader.get(f"{repository}/manifests/{version}", media)
    assert done.index_digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert [i.emulated for i in done.images] == [False, True]


async def test_arm64_run_step_really_ran_as_arm64(multi, reader_for):
    ident, done = multi
    repository = ident.rsplit(":", 1)[0]
    reader = await reader_for(repository)
    by_arch = {img.architecture: img.digest for img in done.images}
    assert await reader.read_file(repository, by_arch["linux/arm64"], "arch") == b"aarch64\n"
    assert await reader.read_file(repository, by_arch["linux/amd64"], "arch") == b"x86_64\n"
    config = await reader.config(repository, by_arch["linux/arm64"])
    assert config["architecture"] == "arm64"


async def test_build_args_arrive_in_the_run_step(multi, reader_for):
    ident, done = multi
    repository = ident.rsplit(":", 1)[0]
    reader = await reader_for(repository)
    for image in done.images:
        assert await reader.read_file(repository, image.digest, "greeting") == b"hello-from-args\n"
    assert done.provenance["build_args"] == {"GREETING": "hello-from-args"}


async def test_result_records_commit_provenance_and_a_scrubbed_log(
    multi, repos, stack, s3_server, service_secrets
):
    ident, done = multi
    assert done.commit == repos["multi"]
    assert done.provenance["commit"] == repos["multi"]
    assert done.provenance["ref"] == "v1"
    assert done.provenance["dockerfile_digest"].startswith("sha256:")
    assert done.index_digest and done.index_digest.startswith("sha256:")
    assert done.duration_seconds > 0
    started = stack[0].events.of(done.build_id, "build.started")
    assert len(started) == 1 and started[0].data["log_location"] == done.log_location
    text = read_log(s3_server.client(), done.log_location)
    assert "built-for-aarch64" in text and "built-for-x86_64" in text
    assert service_secrets["builder"] not in text


# -- the other outcomes, amd64 only ----------------------------------------------------------


async def test_service_answers_health_and_readiness(stack):
    _, config, _ = stack
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/readyz"):
            async with http.get(f"http://127.0.0.1:{config.port}{path}") as resp:
                assert resp.status == 200, (path, await resp.text())


async def test_submodules_are_fetched_and_their_files_built_in(stack, repos, reader_for):
    harness = stack[0]
    ident = app_id("nested")
    build_id = await harness.submit(ident, "nested", branch="main", directory="app")
    done = await harness.events.done(build_id)
    assert done.status == "success", (done.error_class, done.error, done.log_tail)
    assert done.commit == repos["nested"]
    repository = ident.rsplit(":", 1)[0]
    reader = await reader_for(repository)
    content = await reader.read_file(repository, done.images[0].digest, "from-sub")
    assert content == b"hello from a submodule\n"


async def test_unreachable_sources_fail_as_source_unreachable(stack, repos):
    harness = stack[0]
    cases = {
        "no server": dict(url=f"git://127.0.0.1:{free_port()}/nothing.git"),
        "no repository": dict(url=harness.url_of("does-not-exist")),
        "no such branch": dict(branch="no-such-branch"),
        "no such tag": dict(tag="v999"),
        "file url": dict(url="file:///etc"),
        "https nowhere": dict(url=f"https://127.0.0.1:{free_port()}/x.git"),
    }
    builds = {
        name: await harness.submit(app_id("src"), "multi", **src) for name, src in cases.items()
    }
    for name, build_id in builds.items():
        done = await harness.events.done(build_id, within=60)
        assert (done.status, done.error_class) == ("failure", "source_unreachable"), (
            name,
            done.error,
        )
        assert done.error and done.log_location


async def test_missing_or_escaping_dockerfiles_fail_as_dockerfile_missing(stack, repos):
    harness = stack[0]
    cases = {
        "absent file": dict(directory="app", dockerfile="Nope.Dockerfile"),
        "absent directory": dict(directory="nowhere"),
        "dot-dot directory": dict(directory="../../.."),
        "dot-dot dockerfile": dict(directory="app", dockerfile="../../../etc/hostname"),
        "symlinked directory outside": dict(directory="outside"),
        "symlinked dockerfile outside": dict(directory="app", dockerfile="Linked.Dockerfile"),
    }
    builds = {
        name: await harness.submit(app_id("df"), "nested", branch="main", **src)
        for name, src in cases.items()
    }
    for name, build_id in builds.items():
        done = await harness.events.done(build_id, within=60)
        assert (done.status, done.error_class) == ("failure", "dockerfile_missing"), (
            name,
            done.error,
        )
        assert done.commit == repos["nested"], name


async def test_failing_run_step_fails_as_build_failed_with_the_log_tail(stack, repos):
    harness = stack[0]
    build_id = await harness.submit(app_id("fails"), "fails")
    done = await harness.events.done(build_id)
    assert (done.status, done.error_class) == ("failure", "build_failed")
    assert "exit status 3" in done.error
    assert any("about-to-fail" in line for line in done.log_tail)
    assert done.images == [] and done.index_digest is None


async def test_bind_mounting_a_link_out_of_the_context_is_refused(stack, s3_server):
    harness = stack[0]
    build_id = await harness.submit(app_id("peek"), "peek")
    done = await harness.events.done(build_id)
    assert (done.status, done.error_class) == ("failure", "build_failed")
    assert "hostetc links outside it" in done.error
    assert "root:x:0:0" not in read_log(s3_server.client(), done.log_location)


async def test_cancel_stops_a_running_build(stack, s3_server):
    harness = stack[0]
    ident = app_id("slow")
    build_id = await harness.submit(ident, "slow", branch="main")
    started = await harness.events.wait(build_id, "build.started")
    # The log streams while the build runs: the RUN step's first line shows before it ends.
    await until(log_has(s3_server, started.data["log_location"], "sleeping-now"))
    await harness.cancel(ident, build_id)
    done = await harness.events.done(build_id, within=60)
    assert (done.status, done.error_class) == ("failure", "cancelled")
    assert "tester" in done.error
    assert done.duration_seconds < 100
    assert not sleeping_containers()


async def test_a_rebuild_cancels_the_running_build_of_the_same_app(stack, s3_server, repos):
    harness = stack[0]
    ident = app_id("rebuild")
    first = await harness.submit(ident, "slow", branch="main")
    started = await harness.events.wait(first, "build.started")
    await until(log_has(s3_server, started.data["log_location"], "sleeping-now"))
    second = await harness.submit(ident, "slow", tag="quick")
    old = await harness.events.done(first, within=60)
    assert (old.status, old.error_class) == ("failure", "cancelled")
    assert f"superseded by build {second}" in old.error
    new = await harness.events.done(second)
    assert new.status == "success" and new.commit == repos["quick"]


async def test_registry_down_during_push_is_retried_then_fails_clearly(stack, registry_server):
    harness = stack[0]
    registry_server.stop()
    try:
        build_id = await harness.submit(app_id("down"), "multi", tag="v1")
        done = await harness.events.done(build_id, within=120)
    finally:
        registry_server.start()
    assert (done.status, done.error_class) == ("failure", "push_failed")
    assert "3 attempts" in done.error
    assert sum("push attempt" in line and "retrying" in line for line in done.log_tail) == 2


async def test_push_succeeds_when_the_registry_comes_back_between_attempts(
    stack, registry_server, s3_server
):
    harness = stack[0]
    registry_server.stop()
    try:
        build_id = await harness.submit(app_id("back"), "multi", tag="v1")
        started = await harness.events.wait(build_id, "build.started")
        await until(log_has(s3_server, started.data["log_location"], "push attempt 1 failed"))
    finally:
        registry_server.start()
    done = await harness.events.done(build_id, within=120)
    assert done.status == "success", (done.error_class, done.error)


def sleeping_containers() -> list[str]:
    """Pids still running the slow test app's RUN step."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and b"sleeping-now; sleep 120" in (proc / "cmdline").read_bytes()
            ):
                found.append(proc.name)
        except OSError:
            continue
    return found
