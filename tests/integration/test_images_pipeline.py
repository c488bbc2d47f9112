"""The five shipped images, started for real and driven end to end, as an operator deploys them.

The images are built once per run by `scripts/images.sh` (`make images`). Each runs as the compose
file runs it: the image's own user and entrypoint, `init`, production settings with random
secrets, the compose file's /readyz health check (polled every second here), the builder with
compose's `security_opt` and chroot isolation, the profiler as uid 10001 driving an engine of its
own over mutual TLS (started here by the compose file's `profiler-engine` entrypoint). The Docker
bridge is off on these machines, so they share the host's network and listen on private loopback
ports, against the machine's Postgres (this run's database, schemas of their own), RabbitMQ (an
exchange, queues and broker users of their own), and this run's S3 server, registry and git
server. The first user is made with the auth image's `sage-admin`, as an operator does.

A scientist then submits an app with the `sage` command line for two architectures; the
containerised builder builds and pushes it, the containerised profiler pulls it into its engine
and runs its test, a reviewer approves it, and it is published; an object goes through the
storage container and comes back. The ECR API, builder and profiler run as two replicas each
(one gateway per ECR API; the builders and profilers on the same queues, schemas and broker
users): four apps submitted at once are each built and profiled exactly once. When a test fails,
the containers' logs are in its report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from sage_common.bus import queue_names
from sage_common.work import RETRY_DELAYS as PROFILER_RETRY_DELAYS
from tests.fixtures.auth import call
from tests.fixtures.broker import broker_user
from tests.fixtures.gateway import Gateway
from tests.fixtures.images import (
    SERVICE_UID,
    Container,
    PrivateEngine,
    docker,
    free_port,
    named_volume,
    owned_by_service,
)
from tests.fixtures.s3 import S3Server
from tests.support.builder import GitServer, RegistryServer, commit_all, scratch_app
from tests.support.bus import delete_topology, eventually
from tests.support.cli import run_sage
from tests.support.ecr import EventTap

pytestmark = pytest.mark.slow

MiB = 1 << 20
# The compose file's builder: rootless buildah needs unshare and mounts; the sandbox a fresh /proc.
BUILDER_SECURITY = ("seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined")
# The workers an operator scales out: each runs as two replicas here.
REPLICAS = ("ecr-api", "builder", "profiler")
OBSERVED = ("app.submitted", "build.started", "build.done", "profile.done", "app.published")
TEST_COMMAND = ["/bin/sh", "-c", "echo counting; seq 1 3 | wc -l; echo arch=$(uname -m)"]


@dataclass
class ImageStack:
    """The five containers and what surrounds them; see the module docstring."""

    suffix: str
    containers: dict[str, Container]
    gateways: list[Gateway]
    registry: RegistryServer
    git: GitServer
    engine: PrivateEngine
    sources: Path
    events: EventTap
    ready_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.gateways[0].url

    def logs(self) -> str:
        return "\n".join(f"----- {name} -----\n{c.logs()}" for name, c in self.containers.items())

    def admin(self, *args: str) -> str:
        """`sage-admin ARGS` in the auth container, as an operator makes the first users."""
        return self.containers["auth"].exec("sage-admin", *args)

    def user(self, name: str, *, groups: tuple[str, ...] = ()) -> str:
        """A new approved user, in `groups`; their fresh token."""
        self.admin("user", "add", name, "--approved")
        for group in groups:
            with contextlib.suppress(AssertionError):  # made by an earlier call
                self.admin("group", "add", group)
            self.admin("group", "add-member", group, name)
        return self.admin("token", "add", name, "--name", "images-test").strip().split()[-1]

    async def sage(
        self, *args: str, token: str, cwd: Path, within: float = 600, via: int = 0
    ) -> Any:
        """The `sage` command line against gateway `via`; (exit code, stdout, stderr)."""
        done = await run_sage(self.gateways[via].url, token, *args, cwd=cwd, within=within)
        return done.code, done.out, done.err

    async def api(self, method: str, path: str, *, token: str, **kw: Any) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http:
            return await call(http, method, self.url + path, token=token, **kw)


def env_of(prefix: str, settings: Mapping[str, Any]) -> dict[str, str]:
    """Settings as a service's environment: lists and dicts as JSON, booleans as true/false."""
    env = {}
    for name, value in settings.items():
        if isinstance(value, list | dict):
            text = json.dumps(value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"{prefix}{name.upper()}"] = text
    return env


@pytest.fixture(scope="module")
async def image_stack(
    service_images: dict[str, str],
    database_url: str,
    amqp_url: str,
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ImageStack]:
    s = uuid.uuid4().hex[:8]
    exchange = f"test.images.{s}"
    work = tmp_path_factory.mktemp(f"images-{s}")
    env_dir = work / "env"
    env_dir.mkdir(mode=0o700)
    # The workers run twice (REPLICAS): the ECR API, the builder and the profiler.
    ports = {name: free_port() for name in [*service_images, *(f"{r}-2" for r in REPLICAS)]}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    secret = {name: secrets.token_urlsafe(32) for name in (*service_images, "auth")}
    log_bucket = f"img-build-logs-{s}"
    s3 = {
        "s3_endpoint": s3_server.endpoint,
        "s3_access_key": s3_server.access_key,
        "s3_secret_key": s3_server.secret_key,
        "s3_region": s3_server.region,
    }

    def common(name: str, schema: str) -> dict[str, Any]:
        return {
            "environment": "production",
            "host": "127.0.0.1",  # host networking: loopback only
            "port": ports[name],
            "database_url": database_url,
            "db_schema": f"img{s}_{schema}",
            "exchange": exchange,
            "auth_url": url["auth"],
            "client_id": name,
            "client_secret": secret[name],
            "outbox_poll_seconds": 0.2,
        }

    containers: dict[str, Container] = {}
    stack = contextlib.AsyncExitStack()
    async with stack:
        # Registered first, so it runs last: once every consumer has stopped.
        stack.push_async_callback(
            delete_topology,
            amqp_url,
            exchanges=[exchange],
            queues=[
                *queue_names(f"test.images.{s}.ecr"),
                *queue_names(f"test.images.{s}.builder"),
                *queue_names(f"test.images.{s}.builder-cancel"),
                *queue_names(f"test.images.{s}.builder.app-deleted"),
                *queue_names(f"test.images.{s}.profiler", PROFILER_RETRY_DELAYS),
                *queue_names(f"test.images.{s}.profiler-cancel"),
            ],
        )
        bus = {
            service: await broker_user(
                amqp_url,
                service,
                exchange=exchange,
                prefix=f"test.images.{s}.{service.removesuffix('-api')}",
                cleanup=stack,
            )
            for service in ("ecr-api", "builder", "profiler")
        }

        def run(name: str, env: dict[str, str], **kw: Any) -> Container:
            container = Container(
                name=f"sage-test-{name}-{s}",
                image=service_images[name.removesuffix("-2")],
                env=env,
                port=ports[name],
                env_dir=env_dir,
                **kw,
            )
            containers[name] = container
            stack.callback(container.stop)
            container.start()
            return container

        # One gateway in front of each ECR API replica.
        gateways = [
            Gateway([("/auth", url["auth"]), ("/api/v1/objects", url["storage"]), ("/api", api)])
            for api in (url["ecr-api"], url["ecr-api-2"])
        ]
        for gateway in gateways:
            await gateway.start()
            stack.push_async_callback(gateway.stop)
        gateway = gateways[0]

        # auth: its signing key pair in a directory of its own (compose's auth-keys volume).
        keys = owned_by_service(work / "auth-keys")
        auth_settings = common("auth", "auth")
        del auth_settings["exchange"], auth_settings["outbox_poll_seconds"]
        auth_env = env_of("SAGE_AUTH_", auth_settings) | {
            "SAGE_AUTH_PUBLIC_URL": gateway.url,
            "SAGE_AUTH_ECR_URL": url["ecr-api"],
            "SAGE_AUTH_SERVICE_CLIENTS": json.dumps(
                {n: secret[n] for n in ("ecr-api", "storage", "builder", "profiler")}
            ),
        }
        auth = run("auth", auth_env, volumes=[f"{keys}:/var/lib/sage/auth-keys"])
        storage_settings = common("storage", "storage") | s3 | {"s3_bucket": f"img-storage-{s}"}
        del storage_settings["exchange"], storage_settings["outbox_poll_seconds"]
        storage = run("storage", env_of("SAGE_STORAGE_", storage_settings))
        ready = {"auth": await asyncio.to_thread(auth.wait_healthy)}

        registry = RegistryServer(
            work / "registry",
            realm=f"{url['auth']}/auth/registry/token",
            cert=keys / "registry.crt",
        )
        registry.start()
        stack.callback(registry.stop)
        git = GitServer(work / "git")
        git.start()
        stack.callback(git.stop)

        ecr_settings = common("ecr-api", "ecr") | s3 | {
            "amqp_url": bus["ecr-api"],
            "consumer_queue": f"test.images.{s}.ecr",
            "build_log_bucket": log_bucket,
        }  # fmt: skip
        ecr_env = env_of("SAGE_ECR_", ecr_settings)
        ecr = run("ecr-api", ecr_env)
        second = {
            "ecr-api-2": run("ecr-api-2", ecr_env | {"SAGE_ECR_PORT": str(ports["ecr-api-2"])})
        }

        # builder: compose's security options, chroot isolation, its work dir a named volume.
        builder_settings = common("builder", "builder") | s3 | {
            "amqp_url": bus["builder"],
            "queue": f"test.images.{s}.builder",
            "cancel_queue": f"test.images.{s}.builder-cancel",
            "isolation": "chroot",
            "registry": registry.address,
            "s3_bucket": log_bucket,
            "git_insecure_hosts": ["127.0.0.1"],
            "concurrency": 2,
            "log_flush_seconds": 0.2,
        }  # fmt: skip
        builder_env = env_of("SAGE_BUILDER_", builder_settings)
        for name in ("builder", "builder-2"):  # each replica its own work volume
            volume = stack.enter_context(named_volume(f"sage-test-{name}-work-{s}"))
            started = run(
                name,
                builder_env | {"SAGE_BUILDER_PORT": str(ports[name])},
                volumes=[f"{volume}:/var/lib/sage/builder"],
                options=[arg for opt in BUILDER_SECURITY for arg in ("--security-opt", opt)],
            )
            if name == "builder":
                builder = started
            else:
                second[name] = started

        # profiler: uid 10001, an engine of its own over TLS, the host's cgroup tree, test data
        # at the same path in both.
        prefix = f"sage-profiler-img{s}"
        profiler_work = work / "profiler-work"
        engine = PrivateEngine(work / "engine", cgroup_prefix=prefix, work_dir=profiler_work)
        stack.callback(engine.stop)
        await asyncio.to_thread(engine.start)
        profiler_settings = common("profiler", "profiler") | {
            "amqp_url": bus["profiler"],
            "queue": f"test.images.{s}.profiler",
            "cancel_queue": f"test.images.{s}.profiler-cancel",
            "runner": "docker",
            "docker_url": engine.url,
            "docker_tls_dir": "/certs/client",
            "cgroup_prefix": prefix,
            "work_dir": str(profiler_work),
            "pull_policy": "if_missing",
            "pull_registries": [registry.address],
            "registry_username": "profiler",
            "registry_password": secret["profiler"],
            "memory_limit_bytes": 256 * MiB,
            "cpu_limit": 1.0,
            "concurrency_memory_bytes": 512 * MiB,
            "concurrency_cpus": 1.0,
            "default_repetitions": 1,
            "storage_url": url["storage"],
            "storage_token": secret["profiler"],
        }  # fmt: skip
        profiler_env = env_of("SAGE_PROFILER_", profiler_settings)
        profiler_volumes = [
            f"{engine.client_certs}:/certs/client:ro",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            f"{profiler_work}:{profiler_work}",
        ]
        profiler = run("profiler", profiler_env, volumes=profiler_volumes)
        second["profiler-2"] = run(
            "profiler-2",
            profiler_env | {"SAGE_PROFILER_PORT": str(ports["profiler-2"])},
            volumes=profiler_volumes,
        )
        for name, container in (
            ("storage", storage),
            ("ecr-api", ecr),
            ("builder", builder),
            ("profiler", profiler),
            *second.items(),
        ):
            ready[name] = await asyncio.to_thread(container.wait_healthy)
        sources = work / "sources"
        sources.mkdir()
        events = await stack.enter_async_context(EventTap(amqp_url, exchange, OBSERVED))
        yield ImageStack(s, containers, gateways, registry, git, engine, sources, events, ready)
        # Images the builder's buildah storage and the engine hold go with their volumes.
        shutil.rmtree(sources, ignore_errors=True)


async def test_every_image_runs_as_its_unprivileged_user_and_becomes_ready(
    image_stack: ImageStack,
) -> None:
    for name, container in image_stack.containers.items():
        user = docker("inspect", "--format", "{{.Config.User}}", container.name).strip()
        uid = container.exec("id", "-u").strip()
        assert uid == str(SERVICE_UID) and user.startswith(str(SERVICE_UID)), (name, user, uid)
        async with aiohttp.ClientSession() as http, http.get(container.url + "/readyz") as r:
            assert r.status == 200, (name, await r.text())
    assert set(image_stack.ready_seconds) == set(image_stack.containers)


async def test_an_object_goes_through_the_storage_container_and_comes_back(
    image_stack: ImageStack, tmp_path: Path
) -> None:
    token = image_stack.user(f"keeper-{image_stack.suffix}")
    code, out, err = await image_stack.sage(
        "storage", "bucket", "create", "--datatype", "training-data", "--name", "camera7",
        token=token, cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    bucket = json.loads(out)["id"]
    payload = secrets.token_bytes(3 * MiB + 17)
    (tmp_path / "frame.bin").write_bytes(payload)
    code, _, err = await image_stack.sage(
        "storage", "files", "upload", bucket, "frame.bin", "--key", "day1/", token=token,
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    code, _, err = await image_stack.sage(
        "storage", "files", "download", bucket, "day1/frame.bin", "--target", "back.bin",
        token=token, cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "back.bin").read_bytes() == payload


async def test_an_app_is_built_for_two_architectures_profiled_reviewed_and_published(
    image_stack: ImageStack, tmp_path: Path
) -> None:
    s = image_stack.suffix
    owner = image_stack.user(f"scientist-{s}")
    reviewer = image_stack.user(f"reviewer-{s}", groups=("reviewers",))
    app_dir = image_stack.sources / "counter"
    scratch_app(app_dir, "echo built > /built")
    commit_all(app_dir, "the app")
    image_stack.git.publish("counter", app_dir)
    spec = {
        "namespace": f"lab{s}",
        "name": "counter",
        "version": "1.0.0",
        "description": "counter: counts things with busybox",
        "keywords": ["busybox"],
        "source": {
            "url": image_stack.git.url("counter"),
            "branch": "main",
            "architectures": ["linux/amd64", "linux/arm64"],
        },
        "hardware": {"gpu": "none", "min_memory": "64Mi", "devices": ["camera"]},
        "testing": {"command": TEST_COMMAND, "timeout": "1m", "repetitions": 1},
    }
    (tmp_path / "sage.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    app_id = f"lab{s}/counter:1.0.0"
    code, out, err = await image_stack.sage(
        "ecr", "app", "submit", "sage.yaml", "--wait", "--interval", "0.5",
        token=owner, cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, f"{out}\n{err}"
    assert f"{app_id}: in_review" in out, out
    code, out, err = await image_stack.sage(
        "ecr", "review", "approve", app_id, "--comment", "counts well", token=reviewer,
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    path = f"/api/apps/lab{s}/counter/1.0.0"

    async def published() -> bool:
        status, body = await image_stack.api("GET", f"{path}/status", token=owner)
        assert status == 200, body
        return bool(body["state"] == "published")

    await eventually(published, within=30, every=0.5)
    status, build = await image_stack.api("GET", f"/api/builds/lab{s}/counter/1.0.0", token=owner)
    assert status == 200, build
    assert build["result"] == "SUCCESS", build
    arches = {i["architecture"] for i in build["images"]}
    assert arches == {"linux/amd64", "linux/arm64"}, build
    # The profiler pulled the image into its own engine (not the host's) and ran it there.
    pulled = image_stack.engine.docker("images", "--format", "{{.Repository}}")
    assert f"{image_stack.registry.address}/lab{s}/counter" in pulled.split()


def worked_on(stack: ImageStack, replica: str, message: str) -> list[str]:
    """The app ids a replica's log names for `message` (its JSON log lines)."""
    found = []
    for line in stack.containers[replica].logs(tail=2000).splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("message") == message and "app_id" in entry:
                found.append(entry["app_id"])
    return found


async def test_two_replicas_of_each_worker_share_the_work_and_do_none_of_it_twice(
    image_stack: ImageStack, tmp_path: Path
) -> None:
    s = image_stack.suffix
    owner = image_stack.user(f"busy-{s}")
    apps = [f"many{s}/app{i}:1.0.0" for i in range(4)]
    specs = []
    for i in range(len(apps)):
        source = image_stack.sources / f"app{i}"
        scratch_app(source, f"echo {i} > /which")
        commit_all(source, f"app {i}")
        image_stack.git.publish(f"app{i}", source)
        work = tmp_path / f"app{i}"
        work.mkdir()
        spec = {
            "namespace": f"many{s}",
            "name": f"app{i}",
            "version": "1.0.0",
            "description": f"app{i}: one of four at once",
            "keywords": ["busybox"],
            "source": {
                "url": image_stack.git.url(f"app{i}"),
                "branch": "main",
                "architectures": ["linux/amd64", "linux/arm64"],
            },
            "hardware": {"gpu": "none", "min_memory": "64Mi", "devices": ["camera"]},
            "testing": {"command": TEST_COMMAND, "timeout": "1m", "repetitions": 1},
        }
        (work / "sage.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        specs.append(work)
    # All four at once, half through each ECR API replica.
    results = await asyncio.gather(
        *(
            image_stack.sage(
                "ecr",
                "app",
                "submit",
                "sage.yaml",
                "--wait",
                "--interval",
                "0.5",
                token=owner,
                cwd=work,
                via=i % 2,
            )  # fmt: skip
            for i, work in enumerate(specs)
        )
    )
    for app_id, (code, out, err) in zip(apps, results, strict=True):
        assert code == 0, f"{app_id}:\n{out}\n{err}"
        assert f"{app_id}: in_review" in out, out
    # None lost: every app built once for both architectures and profiled once, by one replica.
    for app_id in apps:
        for kind in ("build.done", "profile.done"):
            heard = image_stack.events.count(
                lambda e, k=kind, a=app_id: e.routing_key == k and e.subject == a
            )
            assert heard == 1, (app_id, kind, heard)
        status, build = await image_stack.api(
            "GET", f"/api/builds/{app_id.replace(':', '/')}", token=owner
        )
        assert status == 200 and build["build_number"] == 1, build
        assert {i["architecture"] for i in build["images"]} == {"linux/amd64", "linux/arm64"}
    builds = {r: worked_on(image_stack, r, "build accepted") for r in ("builder", "builder-2")}
    profiles = {r: worked_on(image_stack, r, "profiling") for r in ("profiler", "profiler-2")}
    for done in (builds, profiles):
        mine = sorted(a for ids in done.values() for a in ids if a in apps)
        assert mine == sorted(apps), done  # each app exactly once across the two replicas
