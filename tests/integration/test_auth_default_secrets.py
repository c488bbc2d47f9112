"""Known default secrets (`change-me-*` from .env.example) open nothing, and production refuses
to start with them: every service, from its own `python -m` entry point."""

from __future__ import annotations

import os
import subprocess
import sys

import aiohttp
import pytest

from tests.fixtures.auth import call, start_auth

SERVICES = {  # module -> env prefix
    "sage_auth": "SAGE_AUTH_",
    "sage_ecr": "SAGE_ECR_",
    "sage_storage": "SAGE_STORAGE_",
    "sage_builder": "SAGE_BUILDER_",
    "sage_profiler": "SAGE_PROFILER_",
}


@pytest.fixture
async def weak_auth(database_url, auth_key_dir, service_secrets):
    """An auth service in development mode whose ecr-api account has .env.example's secret."""
    running = await start_auth(
        database_url, auth_key_dir, {**service_secrets, "ecr-api": "change-me-ecr"}
    )
    yield running
    await running.stop()


async def test_a_change_me_service_secret_is_no_credential(weak_auth, make_user):
    token = await make_user("weak-victim")
    url = weak_auth.url
    async with aiohttp.ClientSession() as http:
        # as a bearer token
        status, _ = await call(http, "GET", f"{url}/auth/whoami", token="change-me-ecr")
        assert status == 401
        # as RFC 7662's HTTP Basic service login
        basic = {"Authorization": aiohttp.encode_basic_auth("ecr-api", "change-me-ecr")}
        status, _ = await call(
            http, "POST", f"{url}/auth/token_info", data={"token": token}, headers=basic
        )
        assert status == 401
        # as SAGE's `Sage <service secret>`
        sage = {"Authorization": "Sage change-me-ecr"}
        status, _ = await call(
            http, "POST", f"{url}/auth/token_info/", json={"token": token}, headers=sage
        )
        assert status == 401


@pytest.mark.parametrize("module", sorted(SERVICES))
def test_every_service_refuses_to_start_in_production_with_example_secrets(module: str) -> None:
    prefix = SERVICES[module]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SAGE_")},
        prefix + "ENVIRONMENT": "production",
        prefix + "CLIENT_SECRET": "change-me-auth",
        prefix + "AMQP_URL": "amqp://sage:change-me-rabbitmq@127.0.0.1:1/",
        prefix + "DATABASE_URL": "postgresql://sage:change-me-postgres@127.0.0.1:1/sage",
        prefix + "PORT": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "refusing to start in production" in done.stderr
    for name in ("CLIENT_SECRET", "AMQP_URL", "DATABASE_URL"):
        # auth and storage use no bus: their broker URL is no secret of theirs
        uses = name != "AMQP_URL" or module not in ("sage_auth", "sage_storage")
        assert (prefix + name in done.stderr) is uses, name
    assert "change-me-rabbitmq" not in done.stderr + done.stdout
