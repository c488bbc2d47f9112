"""The pipeline's rules with a fake backend and registry: push retries, cancel, timeout, results."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sage_builder.backend import FakeBackend
from sage_builder.buildlog import MemoryLogSink
from sage_builder.cache import LayerCache
from sage_builder.models import BuildFailure, BuildRequest, Platform
from sage_builder.registry import RegistryClient, RegistryError
from sage_builder.service import Builder, Job, supervise
from sage_builder.source import GitFetcher


class LocalFetcher(GitFetcher):
    """A fetcher that writes a Dockerfile instead of asking git."""

    def __init__(self, dockerfile: str = "FROM scratch\n") -> None:
        super().__init__()
        self.dockerfile = dockerfile

    async def fetch(self, request, dest: Path, log, cache=None) -> str:
        write_app(dest, self.dockerfile)
        log("fetched")
        return "c0ffee" * 6 + "abcd"


def write_app(dest: Path, dockerfile: str) -> None:
    dest.mkdir(parents=True)
    (dest / "Dockerfile").write_text(dockerfile)


class FakeRegistry(RegistryClient):
    """Serves, after each push, an index of what the fake backend pushed."""

    def __init__(self, platforms: list[str], down: bool = False) -> None:
        super().__init__("registry.test", token_url="http://auth.test", service="s", creds=None)
        self.platforms, self.down = platforms, down

    async def ping(self) -> None:
        if self.down:
            raise RegistryError("the registry at http://registry.test is unreachable (refused)")

    async def index(self, repository: str, reference: str) -> tuple[str, dict[str, str]]:
        return "sha256:index", {p: f"sha256:{p.replace('/', '-')}" for p in self.platforms}


def request(*platforms: str) -> BuildRequest:
    return BuildRequest(
        build_id="b1",
        app_id="ns/app:1.0",
        url="https://example.org/app.git",
        branch="main",
        tag=None,
        commit=None,
        directory=".",
        dockerfile="Dockerfile",
        platforms=tuple(Platform.parse(p) for p in platforms or ("linux/amd64",)),
        build_args={"A": "1"},
    )


def builder(tmp_path, backend, registry, **kw) -> Builder:
    return Builder(
        backend=backend,
        fetcher=LocalFetcher(),
        cache=LayerCache(tmp_path / "cache", 10**9),
        sink=MemoryLogSink(),
        registry="registry.test",
        registry_client=registry,
        creds=None,
        work_dir=tmp_path,
        timeout=kw.pop("timeout", 30),
        push_attempts=3,
        push_backoff=0.01,
        **kw,
    )


async def test_success_reports_every_platform_digest_commit_and_provenance(tmp_path):
    backend = FakeBackend()
    b = builder(tmp_path, backend, FakeRegistry(["linux/amd64", "linux/arm64"]))
    done = await b.run(request("linux/amd64", "linux/arm64"), Job("b1", "ns/app:1.0"))
    assert done.status == "success"
    assert done.image == "registry.test/ns/app:1.0" and done.index_digest == "sha256:index"
    assert [(i.architecture, i.digest) for i in done.images] == [
        ("linux/amd64", "sha256:linux-amd64"),
        ("linux/arm64", "sha256:linux-arm64"),
    ]
    assert done.commit == done.provenance["commit"]
    assert done.provenance["build_args"] == {"A": "1"} and done.provenance["ref"] == "main"
    assert done.log_location == "memory://builds/ns/app/1.0/b1.log"
    assert not (tmp_path / "builds" / "b1").exists()  # the checkout is gone


async def test_push_is_retried_and_succeeds_once_the_registry_takes_it(tmp_path):
    backend = FakeBackend()
    backend.push_failures = 2
    done = await builder(tmp_path, backend, FakeRegistry(["linux/amd64"])).run(
        request(), Job("b1", "a")
    )
    assert done.status == "success"
    assert backend.pushed == ["registry.test/ns/app:1.0"]


async def test_push_that_keeps_failing_is_push_failed_with_the_reason(tmp_path):
    backend = FakeBackend()
    backend.push_failures = 5
    b = builder(tmp_path, backend, FakeRegistry(["linux/amd64"], down=True))
    done = await b.run(request(), Job("b1", "a"))
    assert (done.status, done.error_class) == ("failure", "push_failed")
    assert "3 attempts" in done.error and "unreachable" in done.error
    assert sum("retrying" in line for line in done.log_tail) == 2


async def test_index_missing_a_platform_is_push_failed(tmp_path):
    b = builder(tmp_path, FakeBackend(), FakeRegistry(["linux/amd64"]))
    done = await b.run(request("linux/amd64", "linux/arm64"), Job("b1", "a"))
    assert done.error_class == "push_failed" and "linux/arm64" in done.error


async def test_build_failure_keeps_its_class_and_the_commit(tmp_path):
    backend = FakeBackend()
    backend.fail_build = "RUN exited 3"
    done = await builder(tmp_path, backend, FakeRegistry([])).run(request(), Job("b1", "a"))
    assert (done.error_class, done.error) == ("build_failed", "RUN exited 3")
    assert done.commit and done.images == []


async def test_supervise_returns_the_result_or_stops_the_work():
    job = Job("b", "a")
    assert await supervise(asyncio.sleep(0, result=7), job, 5) == 7

    stopped = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    with pytest.raises(BuildFailure) as caught:
        await supervise(forever(), job, 0.05)
    assert caught.value.error_class == "timeout" and stopped.is_set()

    stopped.clear()
    job.request_cancel("cancelled by alice")
    job.request_cancel("a later reason")
    with pytest.raises(BuildFailure) as caught:
        await supervise(forever(), job, 5)
    assert (caught.value.error_class, caught.value.message) == ("cancelled", "cancelled by alice")
    assert stopped.is_set()


@pytest.mark.parametrize("app_id", ["ns/app", "NS/App:1", "ns/app:1/../x", "a/b/c:1", "ns/app:"])
async def test_an_app_id_that_is_no_registry_name_fails_before_fetching(tmp_path, app_id):
    backend = FakeBackend()
    b = builder(tmp_path, backend, FakeRegistry(["linux/amd64"]))
    bad = BuildRequest(**{**request().__dict__, "app_id": app_id})
    done = await b.run(bad, Job("b1", app_id))
    assert done.error_class == "build_failed" and "namespace/name:version" in done.error
    assert backend.built == [] and done.commit is None


async def test_testing_and_hardware_of_the_submission_reach_build_done(tmp_path):
    """The profiler reads the app's test from build.done: success and failure both carry it."""
    testing = {"command": ["/bin/sh", "-c", "true"], "timeout": 60.0}
    hardware = {"gpu": "optional", "min_memory": 67108864}
    asked = BuildRequest(**{**request().__dict__, "testing": testing, "hardware": hardware})
    ok = await builder(tmp_path, FakeBackend(), FakeRegistry(["linux/amd64"])).run(
        asked, Job("b1", "a")
    )
    failed = await builder(tmp_path, FakeBackend(), FakeRegistry([])).run(asked, Job("b1", "a"))
    assert (ok.status, failed.status) == ("success", "failure")
    for done in (ok, failed):
        assert (done.testing, done.hardware) == (testing, hardware)


async def test_a_refused_dockerfile_fails_before_any_pull_or_build(tmp_path):
    backend = FakeBackend()
    b = builder(tmp_path, backend, FakeRegistry(["linux/amd64"]))
    b.fetcher = LocalFetcher("FROM scratch\nADD \\\n  https://example.org/x /x\n")
    done = await b.run(request(), Job("b1", "a"))
    assert (done.status, done.error_class) == ("failure", "build_failed")
    assert "ADD 'https://example.org/x'" in done.error
    assert backend.built == [] and backend.pulled == []


async def test_base_images_are_pulled_per_platform_and_tenants_build_in_their_own_stores(tmp_path):
    backend = FakeBackend()
    b = builder(tmp_path, backend, FakeRegistry(["linux/amd64", "linux/arm64"]))
    b.fetcher = LocalFetcher("FROM registry.test/team/base:1\n")
    done = await b.run(request("linux/amd64", "linux/arm64"), Job("b1", "a"))
    assert done.status == "success", done.error
    assert backend.pulled == [
        ("registry.test/team/base:1", "linux/amd64"),
        ("registry.test/team/base:1", "linux/arm64"),
    ]
    other = BuildRequest(**{**request().__dict__, "app_id": "mallory/app:1.0", "build_id": "b2"})
    await b.run(other, Job("b2", "mallory/app:1.0"))
    assert backend.stores[0] == backend.stores[1] != backend.stores[2]


async def test_a_base_image_whose_onbuild_trigger_breaks_the_rules_is_refused(tmp_path):
    backend = FakeBackend()
    backend.triggers = {"registry.test/team/base:1": ["ADD https://example.org/x /x"]}
    b = builder(tmp_path, backend, FakeRegistry(["linux/amd64"]))
    b.fetcher = LocalFetcher("FROM registry.test/team/base:1\n")
    done = await b.run(request(), Job("b1", "a"))
    assert (done.status, done.error_class) == ("failure", "build_failed")
    assert "base image registry.test/team/base:1 carries ONBUILD ADD" in done.error
    assert backend.built == []
