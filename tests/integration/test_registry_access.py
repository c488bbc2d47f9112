"""Registry pulls and pushes follow the ECR's permissions: auth asks the ECR API, the registry obeys.

The real auth service (asking the ECR with its own service secret), the real ECR API, and Debian's
docker-registry trusting the auth service's tokens. The builder pushes an image over the registry's
HTTP API; then who may pull or push is what the ECR repository's access control list says.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import secrets
import socket
import tarfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp
import jwt
import pytest

from sage_auth.signing import ensure_keypair
from sage_builder.testing.servers import RegistryServer
from sage_ecr.config import Config as EcrConfig
from sage_ecr.testing import RunningEcr, app_spec, start_ecr
from tests.fixtures.auth import RunningAuth, call, free_socket, start_auth

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def sfx() -> str:
    return uuid.uuid4().hex[:8]


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tiny_image() -> tuple[list[bytes], bytes]:
    """(blobs, manifest) of an image with one gzipped layer holding one file."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = b"registry access test\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [digest(raw.getvalue())]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": digest(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": digest(layer),
                }
            ],
        }
    ).encode()
    return [config, layer], manifest


@dataclass
class Stack:
    auth: RunningAuth
    ecr: RunningEcr
    registry: str
    auth_secret: str
    http: aiohttp.ClientSession

    async def token(
        self, scope: str, headers: dict[str, str] | None = None, auth_url: str | None = None
    ) -> tuple[str, list[dict]]:
        """A registry token for `scope` and the access it carries."""
        status, body = await call(
            self.http,
            "GET",
            f"{auth_url or self.auth.url}/auth/registry/token",
            params={"service": "sage-registry", "scope": scope},
            headers=headers or {},
        )
        assert status == 200, body
        return body["token"], jwt.decode(body["token"], options={"verify_signature": False})[
            "access"
        ]

    async def upload(self, repo: str, data: bytes, bearer: str) -> int:
        """One blob, monolithic (POST then PUT with the digest); the first failing status."""
        auth = {"Authorization": f"Bearer {bearer}"}
        url = f"{self.registry}/v2/{repo}/blobs/uploads/"
        async with self.http.post(url, headers=auth) as resp:
            if resp.status != 202:
                return resp.status
            location = urljoin(self.registry, resp.headers["Location"])
        sep = "&" if "?" in location else "?"
        async with self.http.put(
            f"{location}{sep}digest={digest(data)}",
            data=data,
            headers={**auth, "Content-Type": "application/octet-stream"},
        ) as resp:
            return resp.status

    async def push(self, repo: str, tag: str, bearer: str) -> str:
        blobs, manifest = tiny_image()
        for blob in blobs:
            assert await self.upload(repo, blob, bearer) == 201
        async with self.http.put(
            f"{self.registry}/v2/{repo}/manifests/{tag}",
            data=manifest,
            headers={"Authorization": f"Bearer {bearer}", "Content-Type": MANIFEST},
        ) as resp:
            assert resp.status == 201, await resp.text()
        return digest(manifest)

    async def pull(self, repo: str, tag: str, bearer: str) -> tuple[int, str | None]:
        """(status, digest of what came back) of fetching the manifest and then its layers."""
        headers = {"Authorization": f"Bearer {bearer}", "Accept": MANIFEST}
        async with self.http.get(
            f"{self.registry}/v2/{repo}/manifests/{tag}", headers=headers
        ) as resp:
            if resp.status != 200:
                return resp.status, None
            manifest = await resp.read()
        for layer in json.loads(manifest)["layers"]:
            async with self.http.get(
                f"{self.registry}/v2/{repo}/blobs/{layer['digest']}", headers=headers
            ) as resp:
                assert resp.status == 200 and digest(await resp.read()) == layer["digest"]
        return 200, digest(manifest)


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
    _, cert = ensure_keypair(auth_key_dir)
    registry = RegistryServer(
        tmp_path_factory.mktemp("registry"),
        f"{auth.url}/auth/registry/token",
        cert,
        service=auth.config.registry_service,
        issuer=auth.config.registry_issuer,
    )
    registry.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Stack(auth, ecr, f"http://{registry.address}", auth_secret, http)
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
    return Repo(f"{ns}/img", owner, await stack.push(f"{ns}/img", "1.0.0", token))


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
        assert await stack.pull(repo.name, "1.0.0", token) == (200, repo.digest)


async def test_a_stranger_gets_no_pull_of_a_private_repository(stack, repo, make_user):
    stranger = await make_user(f"regstr-{sfx()}")
    for headers in ({"Authorization": f"sage {stranger}"}, {}):
        token, access = await stack.token(f"repository:{repo.name}:pull", headers)
        assert access == []
        assert (await stack.pull(repo.name, "1.0.0", token))[0] == 401


async def test_a_public_repository_is_pulled_anonymously(stack, repo, make_user):
    await grant(stack, repo, "GROUP", "AllUsers", "READ")
    token, access = await stack.token(f"repository:{repo.name}:pull,push")
    assert access == [{"type": "repository", "name": repo.name, "actions": ["pull"]}]
    assert await stack.pull(repo.name, "1.0.0", token) == (200, repo.digest)
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
        assert await stack.upload(repo.name, b"not from the builder", token) == 401
        token, access = await stack.token(f"repository:{repo.name}:pull,push", headers)
        assert access == [{"type": "repository", "name": repo.name, "actions": ["pull"]}]
        assert await stack.upload(repo.name, b"not from the builder", token) == 401


async def test_other_services_pull_every_image(stack, repo, service_secrets):
    basic = {"Authorization": aiohttp.encode_basic_auth("profiler", service_secrets["profiler"])}
    token, _ = await stack.token(f"repository:{repo.name}:pull", basic)
    assert await stack.pull(repo.name, "1.0.0", token) == (200, repo.digest)


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
            assert (await stack.pull(repo.name, "1.0.0", token))[0] == 401
        # admins and the builder do not depend on the ECR
        token, access = await stack.token(scope, {"Authorization": f"sage {admin}"}, cut_off.url)
        assert await stack.pull(repo.name, "1.0.0", token) == (200, repo.digest)
        builder = {
            "Authorization": aiohttp.encode_basic_auth("builder", service_secrets["builder"])
        }
        token, _ = await stack.token(f"repository:{repo.name}:pull,push", builder, cut_off.url)
        assert await stack.push(repo.name, "1.0.1", token)
    finally:
        await cut_off.stop()
    # the same reader through the auth service that reaches the ECR still pulls
    token, _ = await stack.token(scope, {"Authorization": f"sage {reader}"})
    assert await stack.pull(repo.name, "1.0.0", token) == (200, repo.digest)


async def test_only_the_auth_service_may_ask_the_ecr(stack, repo, make_user, service_secrets):
    """The secret auth uses is accepted by the ECR; the builder's or a user's is not."""
    params = {"username": "", "repository": repo.name}
    url = f"{stack.ecr.url}/api/registry/access"
    status, body = await call(stack.http, "GET", url, token=stack.auth_secret, params=params)
    assert status == 200 and body["actions"] == []
    for token in (service_secrets["builder"], repo.owner):
        status, _ = await call(stack.http, "GET", url, token=token, params=params)
        assert status == 403
