"""schemathesis against every service's served OpenAPI document: no input makes a server error.

Each service runs in-process on loopback (as in the other integration tests); its `/openapi.json`
is fuzzed operation by operation, once with an admin's token and once with none, with a bounded
and seeded number of examples so that a run is repeatable and fits the suite's time. The only check
is schemathesis's `not_a_server_error`: a bad input must be a 4xx with a message, never a 5xx.
`SAGE_FUZZ_EXAMPLES` raises the number of examples for a longer run by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import schemathesis
from aiohttp import web
from schemathesis.engine import Status, from_schema
from schemathesis.engine import events as st_events

from sage_auth import service
from sage_auth.models import CreateUser
from sage_auth.state import STORE
from sage_common.bus import queue_names
from sage_common.work import RETRY_DELAYS as PROFILER_RETRY_DELAYS
from sage_ecr.config import Config as EcrConfig
from sage_profiler.app import create_app as create_profiler
from sage_profiler.config import Config as ProfilerConfig
from tests.fixtures.auth import RunningAuth, start_auth
from tests.fixtures.s3 import S3Server, start_storage
from tests.support.builder import config_for_tests, delete_queues, running_builder
from tests.support.bus import delete_topology
from tests.support.ecr import start_ecr
from tests.support.ports import free_port

EXAMPLES = int(os.environ.get("SAGE_FUZZ_EXAMPLES", "25"))
SEED = 20261202


def fuzz_config(url: str, token: str | None) -> schemathesis.Config:
    """Only `not_a_server_error`, a fixed seed, no example database, no stateful phase."""
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": url,
            "headers": {"Authorization": f"sage {token}"} if token else {},
            "checks": {"enabled": False, "not_a_server_error": {"enabled": True}},
            "generation": {
                "max-examples": EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
            "request-timeout": 30,
            "warnings": False,
        }
    )


def fuzz(document: dict[str, Any], url: str, token: str | None) -> tuple[set[str], list[str]]:
    """The operations that answered, and every server error found with a command reproducing it."""
    schema = schemathesis.openapi.from_dict(document, config=fuzz_config(url, token))
    answered: set[str] = set()
    found: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, st_events.ScenarioFinished):
            label = event.recorder.label
            if any(i.response is not None for i in event.recorder.interactions.values()):
                answered.add(label)
            if event.status == Status.FAILURE:
                for nodes in event.recorder.checks.values():
                    found.extend(
                        f"{label}: {node.failure_info.code_sample}"
                        for node in nodes
                        if node.failure_info is not None
                    )
        elif isinstance(event, st_events.NonFatalError | st_events.FatalError):
            found.append(f"engine error: {getattr(event, 'label', '')} {event!r}")
    return answered, found


async def assert_no_server_errors(url: str, token: str | None) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/openapi.json") as resp:
        assert resp.status == 200
        document = await resp.json()
    # The engine's HTTP calls are blocking: run it beside the loop that serves the app.
    answered, found = await asyncio.to_thread(fuzz, document, url, token)
    assert found == [], "\n".join(found)
    operations = {
        f"{method.upper()} {path}" for path, ops in document["paths"].items() for method in ops
    }
    assert operations - answered == set(), "operations the fuzzer never reached"


@dataclass
class Fuzzed:
    """The services under fuzzing, each on its own schema (the fuzzer deletes what it finds)."""

    urls: dict[str, str]
    auth: RunningAuth


@pytest.fixture(scope="module")
async def fuzzed(
    database_url: str,
    amqp_url: str,
    auth_key_dir: Path,
    service_secrets: dict[str, str],
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Fuzzed]:
    suffix = uuid.uuid4().hex[:8]
    exchange = f"test.fuzz.{suffix}"
    profiler_queue = f"test.fuzz.{suffix}.profiler"
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(
            delete_topology,
            amqp_url,
            exchanges=[exchange],
            queues=[
                *queue_names(f"{profiler_queue}-cancel"),
                *queue_names(profiler_queue, PROFILER_RETRY_DELAYS),
            ],
        )
        auth = await start_auth(
            database_url, auth_key_dir, service_secrets, db_schema=f"auth_fuzz_{suffix}"
        )
        stack.push_async_callback(auth.stop)
        settings = {"auth_url": auth.url}
        secrets = {c: {"client_id": c, "client_secret": s} for c, s in service_secrets.items()}
        storage = await start_storage(
            database_url,
            s3_server,
            {**settings, **secrets["storage"]},
            db_schema=f"storage_fuzz_{suffix}",
        )
        stack.push_async_callback(storage.stop)
        ecr = await start_ecr(
            EcrConfig(
                database_url=database_url,
                db_schema=f"ecr_fuzz_{suffix}",
                use_bus=False,
                **settings,
                **secrets["ecr-api"],
            )
        )
        stack.push_async_callback(ecr.stop)
        builder = config_for_tests(
            port=free_port(),
            database_url=database_url,
            db_schema=f"builder_fuzz_{suffix}",
            amqp_url=amqp_url,
            exchange=exchange,
            queue=f"test.fuzz.{suffix}.builder",
            cancel_queue=f"test.fuzz.{suffix}.builder-cancel",
            work_dir=tmp_path_factory.mktemp("fuzz-builder"),
            s3_endpoint=s3_server.endpoint,
            s3_access_key=s3_server.access_key,
            s3_secret_key=s3_server.secret_key,
            s3_bucket=f"build-logs-{suffix}",
            **settings,
            **secrets["builder"],
        )
        stack.push_async_callback(delete_queues, amqp_url, builder)
        await stack.enter_async_context(running_builder(builder))
        profiler_port = free_port()
        profiler = ProfilerConfig(
            port=profiler_port,
            database_url=database_url,
            db_schema=f"profiler_fuzz_{suffix}",
            amqp_url=amqp_url,
            exchange=exchange,
            queue=profiler_queue,
            cancel_queue=f"{profiler_queue}-cancel",
            storage_url=storage.url,
            **settings,
            **secrets["profiler"],
        )
        runner = web.AppRunner(create_profiler(profiler), access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", profiler_port).start()
        yield Fuzzed(
            urls={
                "auth": auth.url,
                "storage": storage.url,
                "ecr-api": ecr.url,
                "builder": f"http://127.0.0.1:{builder.port}",
                "profiler": f"http://127.0.0.1:{profiler_port}",
            },
            auth=auth,
        )


async def new_admin(auth: RunningAuth) -> str:
    """A new admin's token on this auth instance (its own schema, so not `make_user`'s): one per
    run, since a fuzzed run may revoke its own token or demote its own user."""
    store = auth.app[STORE]
    name = f"fuzz-admin-{uuid.uuid4().hex[:8]}"
    await service.create_user(
        store, None, CreateUser(username=name, is_admin=True, is_approved=True)
    )
    return (await service.issue_token(store, name, "fuzz", ["all"], 1)).token


@pytest.mark.slow
@pytest.mark.parametrize("who", ["admin", "anonymous"])
@pytest.mark.parametrize("name", ["auth", "storage", "ecr-api", "builder", "profiler"])
async def test_no_fuzzed_request_gets_a_server_error(fuzzed: Fuzzed, name: str, who: str) -> None:
    token = await new_admin(fuzzed.auth) if who == "admin" else None
    await assert_no_server_errors(fuzzed.urls[name], token)
