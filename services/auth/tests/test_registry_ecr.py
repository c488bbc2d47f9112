"""The ECR-backed registry policy against a stand-in ECR API on loopback: what it asks, what it grants."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from sage_auth.app import make_registry_policy
from sage_auth.config import Config
from sage_auth.service_registry import Access, AdminAndBuilderPolicy
from sage_auth.service_registry_ecr import EcrRegistryPolicy
from sage_common.auth import Principal

SECRET = "auth-secret-for-tests"


@dataclass
class FakeEcr:
    """Answers `/api/registry/access` from `allowed[(username, repository)]`, recording questions."""

    url: str = ""
    allowed: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    asked: list[dict[str, str]] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.asked.append({**request.query, "authorization": request.headers["Authorization"]})
        await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.json_response({"detail": "no"}, status=self.status)
        key = (request.query["username"], request.query["repository"])
        return web.json_response({"actions": self.allowed.get(key, [])})


@pytest.fixture
async def ecr() -> AsyncIterator[FakeEcr]:
    fake = FakeEcr()
    app = web.Application()
    app.router.add_get("/api/registry/access", fake.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def policy(ecr: FakeEcr) -> AsyncIterator[Callable[..., EcrRegistryPolicy]]:
    made: list[EcrRegistryPolicy] = []

    def make(url: str | None = None, timeout: float = 2.0) -> EcrRegistryPolicy:
        made.append(EcrRegistryPolicy(url or ecr.url, "auth", SECRET, timeout=timeout))
        return made[-1]

    yield make
    for p in made:
        await p.close()


ALICE = Principal(username="alice", groups=["lab", "cam"], is_approved=True, scopes=["all"])
ALICE_STORAGE_ONLY = Principal(username="alice", is_approved=True, scopes=["storage:read"])
ADMIN = Principal(username="root", is_admin=True, scopes=["registry"])
BUILDER = Principal(username="service:builder", client_id="builder", scopes=["all"])
PROFILER = Principal(username="service:profiler", client_id="profiler", scopes=["all"])
PULL_PUSH = Access("repository", "ns/app", ("pull", "push"))


async def test_user_gets_what_the_ecr_allows_of_what_was_asked(ecr, policy):
    ecr.allowed[("alice", "ns/app")] = ["pull"]
    ecr.allowed[("alice", "ns/other")] = ["pull", "push"]
    wanted = [
        PULL_PUSH,
        Access("repository", "ns/other", ("pull",)),
        Access("repository", "ns/none", ("pull",)),
    ]
    assert await policy().grant(ALICE, wanted) == [
        Access("repository", "ns/app", ("pull",)),
        Access("repository", "ns/other", ("pull",)),
    ]
    first = next(q for q in ecr.asked if q["repository"] == "ns/app")
    assert first == {
        "repository": "ns/app",
        "username": "alice",
        "groups": "lab,cam",
        "admin": "false",
        "authorization": f"sage {SECRET}",
    }


async def test_anonymous_and_tokens_not_scoped_for_the_registry_ask_as_nobody(ecr, policy):
    ecr.allowed[("", "ns/app")] = ["pull"]
    ecr.allowed[("alice", "ns/app")] = ["pull", "push"]
    for who in (None, ALICE_STORAGE_ONLY):
        assert await policy().grant(who, [PULL_PUSH]) == [Access("repository", "ns/app", ("pull",))]
    assert [q["username"] for q in ecr.asked] == ["", ""]


async def test_other_services_are_asked_about_by_their_account_name(ecr, policy):
    ecr.allowed[("service:profiler", "ns/app")] = ["pull"]
    assert await policy().grant(PROFILER, [PULL_PUSH]) == [
        Access("repository", "ns/app", ("pull",))
    ]


async def test_admins_and_the_builder_are_decided_without_the_ecr(ecr, policy):
    wanted = [
        Access("repository", "ns/app", ("pull", "push", "delete")),
        Access("registry", "catalog", ("*",)),
    ]
    assert await policy().grant(ADMIN, wanted) == wanted
    assert await policy().grant(BUILDER, wanted) == [
        Access("repository", "ns/app", ("pull", "push", "delete"))
    ]
    assert ecr.asked == []


async def test_only_repository_scopes_are_asked_about(ecr, policy):
    assert await policy().grant(ALICE, [Access("registry", "catalog", ("*",))]) == []
    assert ecr.asked == []


async def test_ecr_down_grants_nothing_and_warns_without_the_secret(policy, caplog):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    caplog.set_level(logging.WARNING, logger="sage_auth.service_registry_ecr")
    assert await policy(closed).grant(ALICE, [PULL_PUSH]) == []
    assert await policy(closed).grant(None, [PULL_PUSH]) == []
    assert "ns/app" in caplog.text and "no answer" in caplog.text
    assert SECRET not in caplog.text


async def test_a_slow_ecr_is_given_up_on_within_the_timeout(ecr, policy):
    ecr.allowed[("alice", "ns/app")] = ["pull"]
    ecr.delay = 5.0
    started = time.monotonic()
    assert await policy(timeout=0.3).grant(ALICE, [PULL_PUSH]) == []
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("status", [401, 403, 500])
async def test_a_refusal_from_the_ecr_grants_nothing(ecr, policy, status):
    ecr.allowed[("alice", "ns/app")] = ["pull"]
    ecr.status = status
    assert await policy().grant(ALICE, [PULL_PUSH]) == []


async def test_actions_the_registry_does_not_know_are_never_passed_on(ecr, policy):
    ecr.allowed[("alice", "ns/app")] = ["pull", "delete", "*"]
    wanted = [Access("repository", "ns/app", ("pull", "delete", "*"))]
    assert await policy().grant(ALICE, wanted) == [Access("repository", "ns/app", ("pull",))]


def test_the_ecr_decides_by_default_and_local_keeps_admins_and_builder_only():
    assert isinstance(make_registry_policy(Config(client_secret=SECRET)), EcrRegistryPolicy)
    assert isinstance(make_registry_policy(Config(registry_policy="local")), AdminAndBuilderPolicy)
    assert isinstance(make_registry_policy(Config(ecr_url="")), AdminAndBuilderPolicy)


def test_the_auth_services_own_secret_introspects_as_its_account():
    config = Config(client_secret=SECRET, service_clients={"ecr-api": "x"})
    assert config.service_clients["auth"].get_secret_value() == SECRET
    assert config.service_clients["ecr-api"].get_secret_value() == "x"
