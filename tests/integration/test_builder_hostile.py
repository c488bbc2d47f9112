"""Hostile apps against the real builder: every build of tests/hostile/builds fails, nothing leaks.

The builder runs in-process with the shipped sandbox and isolation (chroot in its own namespaces),
on the run's Postgres, RabbitMQ, auth, S3 and a token-auth registry; each corpus directory is
served by `git daemon` and built for real. Limits are small here (config below) to stay quick.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from sage_builder.registry import Credentials, RegistryClient, write_authfile
from sage_common.schemas import BuildDone
from tests.fixtures.builder import log_has
from tests.support.builder import (
    BUSYBOX,
    Harness,
    RegistryReader,
    commit_all,
    delete_queues,
    read_log,
    running_builder,
    scratch_app,
    until,
)

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).resolve().parents[1] / "hostile" / "builds"
LINKED_TO_ROOT = ("symlink-root", "bind-from-stage")
# Refused before any step, or built FROM another image: no busybox needed (keeps git quick).
NO_BUSYBOX = {
    "onbuild-base",
    "add-git",
    "add-url-arg",
    "add-url-continuation",
    "add-url-json",
    "bind-from-stage",
    "foreign-registry",
    "onbuild-add",
    "private-base",
}
ALSO_ARM64 = {"network-loopback", "proc-peek"}
LIMITS = dict(
    build_timeout_seconds=25,
    build_nproc=256,
    build_memory="512m",
    build_max_file_bytes=32 * 1024**2,
    build_disk_bytes=96 * 1024**2,
    build_disk_poll_seconds=0.5,
)


def app_id(name: str) -> str:
    return f"hostile/{name}-{uuid.uuid4().hex[:6]}:1.0"


@pytest.fixture(scope="module")
def corpus(git_server, tmp_path_factory) -> list[str]:
    """Every corpus directory as a served repository (plus `victim` and `healthy` apps)."""
    work = tmp_path_factory.mktemp("hostile")
    names = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
    for name in names:
        repo = work / name
        shutil.copytree(CORPUS / name, repo)
        for arch, path in BUSYBOX.items():
            if name not in NO_BUSYBOX and (arch == "amd64" or name in ALSO_ARM64):
                shutil.copy(path, repo / f"busybox-{arch}")
        if name in LINKED_TO_ROOT:
            os.symlink("/", repo / "root")
        commit_all(repo, name)
        git_server.publish(name, repo)
    scratch_app(work / "victim", 'echo "victim-secret" > /greeting')
    commit_all(work / "victim", "a private app")
    git_server.publish("victim", work / "victim")
    scratch_app(work / "slow", "echo victim-running; sleep 60", args=("SECRET",))
    commit_all(work / "slow", "a build whose arguments are secret")
    git_server.publish("slow", work / "slow")
    scratch_app(work / "healthy", "echo fine > /fine")
    commit_all(work / "healthy", "a normal app")
    git_server.publish("healthy", work / "healthy")
    return names


@pytest.fixture(scope="module")
async def stack(amqp_url, builder_config, git_server, corpus, tmp_path_factory) -> AsyncIterator:
    suffix = uuid.uuid4().hex[:8]
    base = builder_config(tmp_path_factory.mktemp("builder"), suffix)
    config = base.model_copy(update=LIMITS)
    try:
        async with (
            running_builder(config) as app,
            Harness.open(amqp_url, config.exchange, git_server.url) as harness,
        ):
            yield harness, config, app
    finally:
        await delete_queues(amqp_url, config)


async def build(stack, name: str, **source) -> tuple[BuildDone, str]:
    """Build corpus app `name` (`submitter=` as whom); its build.done and its log."""
    harness = stack[0]
    build_id = await harness.submit(app_id(name), name, **source)
    done = await harness.events.done(build_id, within=240)
    return done, done.log_location or ""


def log_of(s3_server, done: BuildDone) -> str:
    assert done.log_location, (done.error_class, done.error)
    return read_log(s3_server.client(), done.log_location)


def assert_nothing_leaked(text: str, service_secrets: dict[str, str]) -> None:
    for secret in service_secrets.values():
        assert secret not in text
    assert "root:x:0:0" not in text and not re.search(r"SAGE_BUILDER_[A-Z_]+=", text)


def assert_failed(done: BuildDone, error_class: str = "build_failed") -> None:
    assert (done.status, done.error_class) == ("failure", error_class), (
        done.error,
        "\n".join(done.log_tail),
    )
    assert done.images == [] and done.index_digest is None


@pytest.mark.parametrize(
    "name, reason",
    [
        ("add-url-continuation", "ADD 'https://example.org/payload.tgz'"),
        ("add-url-json", "ADD 'http://127.0.0.1:9000/sage-build-logs/'"),
        ("add-url-arg", "ADD '$FROM_ENV'"),
        ("add-git", "ADD 'git@example.org:org/secret.git'"),
        ("onbuild-add", "ONBUILD ADD"),
        ("bind-from-stage", "CVE-2024-1753"),
        ("foreign-registry", "ghcr.io"),
    ],
)
async def test_refused_dockerfiles_fail_before_any_step_runs(
    stack, s3_server, service_secrets, name, reason
):
    done, _ = await build(stack, name)
    assert_failed(done)
    assert done.error.startswith("Dockerfile refused: ") and reason in done.error
    text = log_of(s3_server, done)
    assert "STEP 1" not in text
    assert_nothing_leaked(text, service_secrets)


def loopback_ports(config, registry_server, s3_server, git_server, auth_url) -> str:
    ports = {
        config.port,
        int(registry_server.address.rsplit(":", 1)[1]),
        int(s3_server.endpoint.rsplit(":", 1)[1]),
        git_server.port,
        urlsplit(auth_url).port,
    }
    return " ".join(str(p) for p in sorted(p for p in ports if p))


@pytest.mark.parametrize("architecture", ["linux/amd64", "linux/arm64"])
async def test_build_steps_reach_nothing_on_loopback(
    stack, s3_server, registry_server, git_server, auth_url, service_secrets, architecture
):
    ports = loopback_ports(stack[1], registry_server, s3_server, git_server, auth_url)
    done, _ = await build(
        stack, "network-loopback", architectures=[architecture], build_args={"PORTS": ports}
    )
    assert_failed(done)
    assert "exit status 7" in done.error
    text = log_of(s3_server, done)
    assert not line(r"REACHED \d+", text) and line("no-network-here", text)
    assert "Network is unreachable" in text
    assert_nothing_leaked(text, service_secrets)


@pytest.mark.parametrize("architecture", ["linux/amd64", "linux/arm64"])
async def test_a_step_sees_neither_other_builds_nor_the_builder(
    stack, s3_server, service_secrets, architecture
):
    harness = stack[0]
    marker_a, marker_b = uuid.uuid4().hex, uuid.uuid4().hex
    slow = app_id("slow")
    victim = await harness.submit(slow, "slow", build_args={"SECRET": marker_a + marker_b})
    started = await harness.events.wait(victim, "build.started")
    await until(log_has(s3_server, started.data["log_location"], "victim-running"))
    try:
        done, _ = await build(
            stack,
            "proc-peek",
            architectures=[architecture],
            build_args={"MARKER_A": marker_a, "MARKER_B": marker_b},
        )
    finally:
        await harness.cancel(slow, victim)
    assert_failed(done)
    assert "exit status 7" in done.error
    text = log_of(s3_server, done)
    assert not line(r"FOUND in /proc/\d+", text) and marker_a + marker_b not in text
    seen = line(r"saw (\d+) processes", text)
    assert seen, text
    assert int(seen.group(1)) < 20  # this build's buildah and its step, not the machine's processes
    assert "Permission denied" in text  # /proc/1/root: buildah's own files
    assert_nothing_leaked(text, service_secrets)


async def test_a_root_step_cannot_leave_its_chroot(stack, s3_server, service_secrets):
    done, _ = await build(stack, "chroot-escape")
    assert_failed(done)
    text = log_of(s3_server, done)
    assert line("sys_chroot=0", text) and not line("ESCAPE-POSSIBLE", text)
    assert "Operation not permitted" in text
    assert_nothing_leaked(text, service_secrets)


async def test_a_link_to_the_host_root_copies_nothing_of_the_host(
    stack, s3_server, service_secrets
):
    done, _ = await build(stack, "symlink-root")
    assert_failed(done)
    text = log_of(s3_server, done)
    assert socket.gethostname() not in text.split("STEP 1", 1)[1]
    assert_nothing_leaked(text, service_secrets)


@pytest.fixture(scope="module")
async def victim_image(stack) -> str:
    """victim/app:1.0, a private image in our registry (pushed by the builder)."""
    harness = stack[0]
    victim = await harness.submit("victim/app:1.0", "victim")
    done = await harness.events.done(victim, within=120)
    assert done.status == "success", (done.error, "\n".join(done.log_tail))
    return done.image


@pytest.mark.parametrize("name", ["private-base", "private-copy-from"])
async def test_other_tenants_private_images_cannot_be_built_from(
    stack, s3_server, registry_server, service_secrets, make_user, victim_image, name
):
    mallory = f"mallory{uuid.uuid4().hex[:6]}"
    await make_user(mallory)
    done, _ = await build(
        stack, name, submitter=mallory, build_args={"REGISTRY": registry_server.address}
    )
    assert_failed(done)
    assert f"base image {victim_image} could not be pulled" in done.error
    text = log_of(s3_server, done)
    assert "victim-secret" not in text
    assert_nothing_leaked(text, service_secrets)


async def test_base_images_are_pulled_with_the_submitters_own_rights(
    stack, s3_server, registry_server, service_secrets, make_user, victim_image
):
    admin = f"admin{uuid.uuid4().hex[:6]}"  # an administrator may read every repository
    await make_user(admin, admin=True)
    done, _ = await build(
        stack, "private-base", submitter=admin, build_args={"REGISTRY": registry_server.address}
    )
    assert done.status == "success", (done.error, "\n".join(done.log_tail))
    text = log_of(s3_server, done)
    assert line("victim-secret", text)
    assert_nothing_leaked(text, service_secrets)


async def test_tenants_building_the_same_url_share_no_cache(stack, s3_server):
    harness = stack[0]
    logs = []
    for tenant in ("mallory", "mallory", "victim"):
        build_id = await harness.submit(f"{tenant}/cachey:1.0", "cache-poison")
        done = await harness.events.done(build_id, within=120)
        assert done.status == "success", (done.error, "\n".join(done.log_tail))
        logs.append(log_of(s3_server, done))
    # The same tenant's second build reuses its layer; the other tenant starts from nothing.
    assert line("fresh-cache", logs[0]) and "Using cache" in logs[1]
    assert line("fresh-cache", logs[2]) and not line("FOUND planted-here", logs[2])
    assert "Using cache" not in logs[2].split("--mount=type=cache", 1)[1]


async def test_a_base_image_with_a_hostile_onbuild_trigger_is_refused(
    stack, s3_server, registry_server, service_secrets, make_user, tmp_path
):
    trap = f"{registry_server.address}/hostile/trap:1.0"
    await asyncio.to_thread(push_docker_format_trap, tmp_path, trap, service_secrets["builder"])
    admin = f"admin{uuid.uuid4().hex[:6]}"
    await make_user(admin, admin=True)
    done, _ = await build(
        stack, "onbuild-base", submitter=admin, build_args={"REGISTRY": registry_server.address}
    )
    assert_failed(done)
    assert f"base image {trap} carries ONBUILD ADD 'https://example.org/later'" in done.error
    assert_nothing_leaked(log_of(s3_server, done), service_secrets)


def push_docker_format_trap(tmp: Path, reference: str, secret: str) -> None:
    """Build `FROM scratch` + `ONBUILD ADD <url>` in Docker format and push it as the builder."""
    (tmp / "ctx").mkdir()
    (tmp / "ctx" / "Dockerfile").write_text(
        "FROM scratch\nONBUILD ADD https://example.org/later /x\n"
    )
    registry = reference.split("/", 1)[0]
    authfile = write_authfile(tmp / "auth", registry, Credentials("builder", secret))
    base = ["buildah", "--root", str(tmp / "st"), "--runroot", str(tmp / "run")]
    base += ["--storage-driver", "vfs"]
    for args in (
        ["build", "--format", "docker", "--isolation", "chroot", "-t", reference, str(tmp / "ctx")],
        ["push", "--tls-verify=false", "--authfile", str(authfile), reference],
    ):
        subprocess.run([*base, *args], check=True, capture_output=True, timeout=120)  # noqa: S603


# The fork bomb's processes: `sleep 317`, a length nothing else on the machine sleeps (a profiled
# app of the pipeline tests sleeps 300).
FORKS = b"sleep\x00317"


async def test_a_fork_bomb_stops_at_the_builds_process_limit(stack, s3_server, service_secrets):
    done, _ = await build(stack, "fork-bomb")
    assert_failed(done)
    text = log_of(s3_server, done)
    stopped = line(r"forks stopped after (\d+)", text)
    assert stopped or "can't fork" in text
    if stopped:
        assert int(stopped.group(1)) < LIMITS["build_nproc"]
    try:
        await until(lambda: not processes_with(FORKS), within=30)
    except AssertionError:
        left = "; ".join(process_story(pid) for pid in processes_with(FORKS)[:5])
        raise AssertionError(f"the build's forks outlived it ({done.error}): {left}") from None
    assert_nothing_leaked(text, service_secrets)


async def test_a_step_over_the_memory_limit_is_stopped(stack, s3_server, service_secrets):
    done, _ = await build(stack, "memory-hog")
    assert_failed(done)
    assert f"went over the build's memory limit of {LIMITS['build_memory']}" in done.error
    text = log_of(s3_server, done)
    assert not line("survived", text)
    assert_nothing_leaked(text, service_secrets)


async def test_an_image_keeps_nothing_of_the_builder_that_a_step_hunted_for(
    stack, s3_server, registry_server, service_secrets
):
    done, _ = await build(stack, "secret-hunt")
    assert done.status == "success", (done.error, "\n".join(done.log_tail))
    repository = done.image.split("/", 1)[1].rsplit(":", 1)[0]
    reader = await reader_as_builder(registry_server, stack[1], service_secrets, repository)
    found = await reader.read_file(repository, done.images[0].digest, "found.txt")
    assert found is not None
    text = found.decode()
    assert "auth.json" not in text and "registry.log" not in text and "config.yml" not in text
    assert not re.search(r"SAGE_BUILDER_[A-Z_]+=", text) and "PASSWORD" not in text
    for secret in service_secrets.values():
        assert secret not in text
    assert_nothing_leaked(log_of(s3_server, done), service_secrets)


async def reader_as_builder(registry_server, config, service_secrets, repository: str):
    client = RegistryClient(
        registry_server.address,
        token_url=config.token_url,
        service=config.registry_service,
        creds=Credentials("builder", service_secrets["builder"]),
    )
    async with aiohttp.ClientSession() as session:
        token = await client.token(session, repository, "pull")
    return RegistryReader(registry_server.address, token)


async def test_filling_the_disk_stops_at_the_builds_disk_limit(stack, s3_server, service_secrets):
    done, _ = await build(stack, "disk-fill")
    assert_failed(done)
    assert "wrote more than" in done.error
    assert_nothing_leaked(log_of(s3_server, done), service_secrets)


async def test_twenty_gigabytes_of_zeros_stop_at_the_file_size_limit(
    stack, s3_server, service_secrets
):
    done, _ = await build(stack, "zeros-20g")
    assert_failed(done)
    assert (
        f"a RUN step wrote a file over the limit of {LIMITS['build_max_file_bytes']}" in done.error
    )
    text = log_of(s3_server, done)
    assert_nothing_leaked(text, service_secrets)


async def test_a_step_waiting_forever_is_stopped_by_the_build_timeout(
    stack, s3_server, service_secrets
):
    done, _ = await build(stack, "waits-forever")
    assert_failed(done, "timeout")
    await until(lambda: not processes_with(b"sleep\x001000000"), within=30)
    assert_nothing_leaked(log_of(s3_server, done), service_secrets)


async def test_the_builder_is_healthy_and_builds_after_the_corpus(stack, s3_server):
    harness, config, _ = stack
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/readyz"):
            async with http.get(f"http://127.0.0.1:{config.port}{path}") as resp:
                assert resp.status == 200, (path, await resp.text())
    build_id = await harness.submit(app_id("healthy"), "healthy")
    done = await harness.events.done(build_id, within=120)
    assert done.status == "success", (done.error_class, done.error, "\n".join(done.log_tail))


def line(pattern: str, text: str) -> re.Match[str] | None:
    """A whole log line matching `pattern` (not the echo of the step's script that holds it)."""
    return re.search(rf"^{pattern}$", text, re.MULTILINE)


def process_story(pid: str) -> str:
    """Where a process is, to say why it outlived its build: state, parent, PID namespace, cgroups."""
    proc = Path("/proc") / pid
    try:
        stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        groups = (proc / "cgroup").read_text().split()
        return f"pid {pid} state {stat[0]} ppid {stat[1]} {os.readlink(proc / 'ns/pid')} {groups}"
    except OSError as exc:
        return f"pid {pid} ({exc.strerror})"


def processes_with(needle: bytes) -> list[str]:
    """Pids on this machine whose command line holds `needle`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and needle in (proc / "cmdline").read_bytes():
                found.append(proc.name)
        except OSError:
            continue
    return found
