"""The profiler service's aiohttp application: health and metrics, the runner, the consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from sage_common.web import CONFIG, POOL, READY_CHECKS, bus_context, create_service_app
from sage_common.work import Jobs

from .config import Config
from .events import consumers
from .gpu import open_gpu
from .routes import routes
from .runner_docker import DockerRunner
from .runner_k8s import KubernetesRunner
from .service import Profiler
from .service_profiles import Profiles
from .state import JOBS, PROFILER, PROFILES
from .store import Store
from .testdata import StorageHttpSource

MIGRATIONS = Path(__file__).parent / "migrations"


def make_runner(config: Config) -> DockerRunner | KubernetesRunner:
    """The runner `config.runner` names: the local Docker engine (default) or Kubernetes Jobs."""
    if config.runner == "kubernetes":
        return KubernetesRunner.from_config(config)
    password = config.registry_password.get_secret_value()
    auth = {"username": config.registry_username, "password": password}
    return DockerRunner(
        base_url=config.docker_url,
        tls_dir=config.docker_tls_dir,
        cgroup_root=config.cgroup_root,
        cgroup_prefix=config.cgroup_prefix,
        sample_hz=config.sample_hz,
        pull_policy=config.pull_policy,
        registries=tuple(config.pull_registries),
        registry_auth=auth if config.registry_username else None,
        gpu=open_gpu() if config.gpu == "auto" else None,
    )


async def _engine_ready(app: web.Application) -> None:
    runner = app[PROFILER].runner
    if isinstance(runner, KubernetesRunner):
        await runner.ping()
        return
    assert isinstance(runner, DockerRunner)
    await asyncio.to_thread(runner.client.ping)


async def profiler_context(app: web.Application) -> AsyncIterator[None]:
    """The runner, test data source and profiles running here; containers or Jobs a killed profiler left are removed."""
    config = app[CONFIG]
    assert isinstance(config, Config)
    runner = await asyncio.to_thread(make_runner, config)
    await runner.cleanup()
    data = StorageHttpSource(
        config.storage_url,
        config.storage_token.get_secret_value(),
        max_bytes=config.test_data_max_bytes,
    )
    profiler = Profiler(runner=runner, data=data, config=config)
    app[PROFILER], app[PROFILES] = profiler, Profiles(profiler, Store(), source=config.source)
    app[JOBS] = Jobs(app[POOL], concurrency=config.max_parallel_profiles, name="profiler")
    app[READY_CHECKS].append(_engine_ready)
    yield
    if isinstance(runner, KubernetesRunner):
        await runner.close()
    else:
        runner.close()


def create_app(config: Config) -> web.Application:
    app = create_service_app("profiler", config, routes=routes, migrations=MIGRATIONS)
    app.cleanup_ctx.append(profiler_context)
    app.cleanup_ctx.append(bus_context(consumers))
    return app
