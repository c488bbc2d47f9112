"""Registry pulls and pushes follow the ECR's permissions: auth asks the ECR API, the registry obeys.

The real auth service (asking the ECR with its own service secret), the real ECR API, and Debian's
docker-registry trusting the auth service's tokens. The builder pushes an image over the registry's
HTTP API; then who may pull or push is what the ECR repository's access control list says.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from sage_ecr.config import Config as EcrConfig
from tests.fixtures.auth import RunningAuth, call, free_socket, start_auth
from tests.fixtures.registry import RegistryClient, access_of, registry_for, registry_token
from tests.support.ecr import RunningEcr, app_spec, start_ecr
from tests.support.names import sfx


@dataclass
class Stack:
    auth: RunningAuth
    ecr: RunningEcr
    registry: RegistryClient
    auth_secret: str
    http: aiohttp.ClientSession

    async def token(
        self, scope: str, headers: dict[str, str] | None = None, auth_url: str | None = None
    ) -> tuple[str, list[dict]]:
        """A registry token for `scope` and the access it carries."""
        token = await registry_token(self.http, auth_url or self.auth.url, scope, headers)
        return token, access_of(token)


@pytest.fixture(scope="module")
async def stack(
    database_url, amqp_url, auth_key_dir, service_secrets, tmp_path_factory
) -> AsyncIterator[Stack]:
    """Auth and ECR that know each other (each needs the other's address), and a registry."""
    auth_secret = secrets.token_urlsafe(32)
    sock = free_socket()
    auth_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    ecr = await start_ecr(
        EcrConfig(
            database_url=database_url,
            amqp_url=amqp_url,
            db_schema=f"ecr_reg_{sfx()}",
            use_bus=False,
            auth_url=auth_url,
            client_id="ecr-api",
            client_secret=service_secrets["ecr-api"],
        )
    )
    auth = await start_auth(
        database_url,
        auth_key_dir,
        {**service_secrets, "auth": auth_secret},
        sock=sock,
        ecr_url=ecr.url,
        client_id="auth",
        client_secret=auth_secret,
        ecr_timeout=3.0,
    )
    registry = registry_for(auth, auth_key_dir, tmp_path_factory.mktemp("registry"))
    try:
        async with aiohttp.ClientSession() as http:
            client = RegistryClient(http, f"http://{registry.address}")
            yield Stack(auth, ecr, client, auth_secret, http)
    finally:
        registry.stop()
        await auth.stop()
        await ecr.stop()


@dataclass
class Repo:
    name: str  # ns/name, in the ECR and in the registry
    owner: str  # the owner's token
    digest: str


@pytest.fixture
async def repo(stack: Stack, make_user, service_secrets) -> Repo:
    """A private ECR repository whose image the builder pushed."""
    s = sfx()
    owner = await make_user(f"regown-{s}")
    ns = f"reg{s}"
    status, body = await call(
        stack.http, "POST", f"{stack.ecr.url}/api/submit", token=owner, json=app_spec(ns, "img")
    )
    assert status == 200, body
    builder = {"Authorization": aiohttp.encode_basic_auth("builder", service_secrets["builder"])}
    token, access = await stack.token(f"repository:{ns}/img:pull,push", builder)
    assert access == [{"type": "repository", "name": f"{ns}/img", "actions": ["pull", "push"]}]
    return Repo(f"{ns}/img", owner, await stack.registry.push(f"{ns}/img", "1.0.0", token))


async def grant(stack: Stack, repo: Repo, grantee_type: str, grantee: str, permission: str):
    status, body = await call(
        stack.http,
        "PUT",
        f"{stack.ecr.url}/api/permissions/{repo.name}",
        token=repo.owner,
        json={
            "operation": "add",
            "granteeType": grantee_type,
            "grantee": grantee,
            "permission": permission,
        },
    )
    assert status == 200, body


async def test_a_user_with_read_pulls_what_the_builder_pushed(stack, repo, make_user):
    s = sfx()
    reader = await make_user(f"regread-{s}")
    member = await make_user(f"regmem-{s}", groups=[f"team-{s}"])
    await grant(stack, repo, "USER", f"regread-{s}", "READ")
    await grant(stack, repo, "GROUP", f"team-{s}", "READ")
    for headers in (
        {"Authorization": f"sage {reader}"},
        {"Authorization": aiohttp.encode_basic_auth(f"regread-{s}", reader)},  # docker login
        {"Authorization": f"sage {member}"},
        {"Authorization": f"sage {repo.owner}"},
    ):
        token, access = await stack.token(f"repository:{repo.name}:pull", headers)
        assert access == [{"type": "repository", "name": repo.name, "actions": ["pull"]}]
        assert await stack.registry.pull(repo.name, "1.0.0", token) == (200, repo.digest)


async def test_a_stranger_gets_no_pull_of_a_private_repository(stack, repo, make_user):
    stranger = await make_user(f"regstr-{sfx()}")
    for headers in ({"Authorization": f"sage {stranger}"}, {}):
        token, access = await stack.token(f"repository:{repo.name}:pull", headers)
        assert access == []
        assert (await stack.registry.pull(repo.name, "1.0.0", token))[0] == 401


async def test_a_public_repository_is_pulled_anonymously(stack, repo, make_user):
    await grant(stack, repo, "GROUP", "AllUsers", "READ")
    token, access = await stack.token(f"repository:{repo.name}:pull,push")
    assert access == [{"type": "repository", "name": repo.name, "actions": ["pull"]}]
    assert await stack.registry.pull(repo.name, "1.0.0", token) == (200, repo.digest)
    # a token scoped away from the registry pulls what anyone may, and no more
    narrow = await make_user(f"regnarrow-{sfx()}", scopes=["storage:read"])
    _, access = await stack.token(
        f"repository:{repo.name}:pull,push", {"Authorization": f"sage {narrow}"}
    )
    assert access == [{"type": "repository", "name": repo.name, "actions": ["pull"]}]


async def test_nobody_but_the_builder_pushes(stack, repo, make_user, service_secrets):
    s = sfx()
    writer = await make_user(f"regwri-{s}")
    await grant(stack, repo, "USER", f"regwri-{s}", "WRITE")
    await grant(stack, repo, "GROUP", "AllUsers", "READ")
    profiler = aiohttp.encode_basic_auth("profiler", service_secrets["profiler"])
    for headers in (
        {"Authorization": f"sage {repo.owner}"},  # FULL_CONTROL in the ECR
        {"Authorization": f"sage {writer}"},
        {"Authorization": profiler},
        {},
    ):
        token, access = await stack.token(f"repository:{repo.name}:push", headers)
        assert access == []
        assert await stack.registry.upload(repo.name, b"not from the builder", token) == 401
        token, access = await stack.token(f"repository:{repo.name}:pull,push", headers)
        assert access == [{"type": "repository", "name": repo.name, "actions": ["pull"]}]
        assert await stack.registry.upload(repo.name, b"not from the builder", token) == 401


async def test_other_services_pull_every_image(stack, repo, service_secrets):
    basic = {"Authorization": aiohttp.encode_basic_auth("profiler", service_secrets["profiler"])}
    token, _ = await stack.token(f"repository:{repo.name}:pull", basic)
    assert await stack.registry.pull(repo.name, "1.0.0", token) == (200, repo.digest)


async def test_repositories_not_in_the_catalogue_get_nothing(stack, make_user):
    user = await make_user(f"regnone-{sfx()}")
    _, access = await stack.token(
        f"repository:nothere{sfx()}/img:pull", {"Authorization": f"sage {user}"}
    )
    assert access == []


async def test_with_the_ecr_down_non_admins_get_nothing(
    stack, repo, make_user, database_url, auth_key_dir, service_secrets
):
    s = sfx()
    reader = await make_user(f"regdown-{s}")
    admin = await make_user(f"regadm-{s}", admin=True)
    await grant(stack, repo, "USER", f"regdown-{s}", "READ")
    await grant(stack, repo, "GROUP", "AllUsers", "READ")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    cut_off = await start_auth(
        database_url,
        auth_key_dir,
        {**service_secrets, "auth": stack.auth_secret},
        ecr_url=dead,
        client_id="auth",
        client_secret=stack.auth_secret,
        ecr_timeout=1.0,
    )
    try:
        scope = f"repository:{repo.name}:pull"
        for headers in ({"Authorization": f"sage {reader}"}, {}):
            token, access = await stack.token(scope, headers, cut_off.url)
            assert access == []
            assert (await stack.registry.pull(repo.name, "1.0.0", token))[0] == 401
        # admins and the builder do not depend on the ECR
        token, access = await stack.token(scope, {"Authorization": f"sage {admin}"}, cut_off.url)
        assert await stack.registry.pull(repo.name, "1.0.0", token) == (200, repo.digest)
        builder = {
            "Authorization": aiohttp.encode_basic_auth("builder", service_secrets["builder"])
        }
        token, _ = await stack.token(f"repository:{repo.name}:pull,push", builder, cut_off.url)
        assert await stack.registry.push(repo.name, "1.0.1", token)
    finally:
        await cut_off.stop()
    # the same reader through the auth service that reaches the ECR still pulls
    token, _ = await stack.token(scope, {"Authorization": f"sage {reader}"})
    assert await stack.registry.pull(repo.name, "1.0.0", token) == (200, repo.digest)


async def test_only_the_auth_service_may_ask_the_ecr(stack, repo, make_user, service_secrets):
    """The secret auth uses is accepted by the ECR; the builder's or a user's is not."""
    params = {"username": "", "repository": repo.name}
    url = f"{stack.ecr.url}/api/registry/access"
    status, body = await call(stack.http, "GET", url, token=stack.auth_secret, params=params)
    assert status == 200 and body["actions"] == []
    for token in (service_secrets["builder"], repo.owner):
        status, _ = await call(stack.http, "GET", url, token=token, params=params)
        assert status == 403
