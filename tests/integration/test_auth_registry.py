"""Registry tokens against the real registry (Debian's docker-registry) configured to trust them."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import re
import socket
import tarfile
import time
import uuid
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import jwt
import pytest

from sage_auth.signing import Signer, ensure_keypair
from tests.fixtures.auth import call

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
async def registry_url(auth_url, auth_config, tmp_path_factory):
    """The real registry on a free loopback port, trusting the test auth service's certificate."""
    _, cert = ensure_keypair(auth_config.key_dir)
    tmp = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = tmp / "config.yml"
    config.write_text(
        f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {tmp / "data"}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: {uuid.uuid4().hex}
auth:
  token:
    realm: {auth_url}/auth/registry/token
    service: {auth_config.registry_service}
    issuer: {auth_config.registry_issuer}
    rootcertbundle: {cert}
"""
    )
    log = (tmp / "registry.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        "docker-registry", "serve", str(config), stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                assert proc.returncode is None, (tmp / "registry.log").read_text()
                try:
                    async with http.get(f"{url}/v2/") as resp:
                        if resp.status == 401:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "the registry did not start"
                await asyncio.sleep(0.1)
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), timeout=10)
        log.close()


@pytest.fixture
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as session:
        yield session


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image() -> tuple[bytes, bytes, bytes]:
    """(config, layer, manifest) of a tiny image: one gzipped tar layer holding one file."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = b"hello from a test image\n"
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
    return config, layer, manifest


async def registry_token(http, auth_url, scope: str, headers: dict[str, str] | None = None) -> str:
    status, body = await call(
        http,
        "GET",
        f"{auth_url}/auth/registry/token",
        params={"service": "sage-registry", "scope": scope},
        headers=headers or {},
    )
    assert status == 200, body
    assert body["token"] == body["access_token"] and body["expires_in"] > 0
    return body["token"]


async def upload(http, registry_url, repo: str, data: bytes, bearer: str) -> int:
    """Upload one blob (monolithic: POST then PUT with the digest); the first failing status."""
    auth = {"Authorization": f"Bearer {bearer}"}
    async with http.post(f"{registry_url}/v2/{repo}/blobs/uploads/", headers=auth) as resp:
        if resp.status != 202:
            return resp.status
        location = urljoin(registry_url, resp.headers["Location"])
    sep = "&" if "?" in location else "?"
    async with http.put(
        f"{location}{sep}digest={digest(data)}",
        data=data,
        headers={**auth, "Content-Type": "application/octet-stream"},
    ) as resp:
        return resp.status


async def push(http, registry_url, repo: str, tag: str, bearer: str) -> str:
    config, layer, manifest = image()
    assert await upload(http, registry_url, repo, config, bearer) == 201
    assert await upload(http, registry_url, repo, layer, bearer) == 201
    async with http.put(
        f"{registry_url}/v2/{repo}/manifests/{tag}",
        data=manifest,
        headers={"Authorization": f"Bearer {bearer}", "Content-Type": MANIFEST},
    ) as resp:
        assert resp.status == 201, await resp.text()
        assert resp.headers["Docker-Content-Digest"] == digest(manifest)
    return digest(manifest)


def repo_name() -> str:
    return f"test-ns/app-{uuid.uuid4().hex[:8]}"


async def test_admin_pushes_and_pulls_through_the_registry(http, auth_url, registry_url, make_user):
    admin = await make_user(f"regadm-{uuid.uuid4().hex[:8]}", admin=True)
    repo = repo_name()
    token = await registry_token(
        http, auth_url, f"repository:{repo}:pull,push", {"Authorization": f"sage {admin}"}
    )
    manifest_digest = await push(http, registry_url, repo, "v1", token)
    bearer = {"Authorization": f"Bearer {token}", "Accept": MANIFEST}
    async with http.get(f"{registry_url}/v2/{repo}/manifests/v1", headers=bearer) as resp:
        assert resp.status == 200
        assert digest(await resp.read()) == manifest_digest
    _, layer, _ = image()
    async with http.get(f"{registry_url}/v2/{repo}/blobs/{digest(layer)}", headers=bearer) as resp:
        assert resp.status == 200 and await resp.read() == layer


async def test_anonymous_pull_is_challenged_toward_the_auth_service(http, auth_url, registry_url):
    repo = repo_name()
    async with http.get(f"{registry_url}/v2/{repo}/manifests/v1") as resp:
        assert resp.status == 401
        challenge = resp.headers["WWW-Authenticate"]
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    assert challenge.startswith("Bearer ")
    assert params["realm"] == f"{auth_url}/auth/registry/token"
    assert params["service"] == "sage-registry"
    assert params["scope"] == f"repository:{repo}:pull"
    # following the challenge anonymously gives a token with no access, which is refused again
    token = await registry_token(http, auth_url, params["scope"])
    assert jwt.decode(token, options={"verify_signature": False})["access"] == []
    bearer = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{registry_url}/v2/{repo}/manifests/v1", headers=bearer) as resp:
        assert resp.status == 401


async def test_plain_user_may_neither_push_nor_pull_yet(http, auth_url, registry_url, make_user):
    admin = await make_user(f"regadm-{uuid.uuid4().hex[:8]}", admin=True)
    user = await make_user(f"reguser-{uuid.uuid4().hex[:8]}")
    repo = repo_name()
    scope = f"repository:{repo}:pull,push"
    await push(
        http,
        registry_url,
        repo,
        "v1",
        await registry_token(http, auth_url, scope, {"Authorization": f"sage {admin}"}),
    )
    token = await registry_token(http, auth_url, scope, {"Authorization": f"sage {user}"})
    assert await upload(http, registry_url, repo, b"nope", token) == 401
    bearer = {"Authorization": f"Bearer {token}", "Accept": MANIFEST}
    async with http.get(f"{registry_url}/v2/{repo}/manifests/v1", headers=bearer) as resp:
        assert resp.status == 401


async def test_no_token_at_all_is_refused(http, registry_url):
    repo = repo_name()
    async with http.post(f"{registry_url}/v2/{repo}/blobs/uploads/") as resp:
        assert resp.status == 401


async def test_builder_service_account_pushes_with_basic_credentials(
    http, auth_url, registry_url, service_secrets
):
    repo = repo_name()
    basic = {"Authorization": aiohttp.encode_basic_auth("builder", service_secrets["builder"])}
    token = await registry_token(http, auth_url, f"repository:{repo}:pull,push,delete", basic)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "service:builder"
    assert claims["access"] == [{"type": "repository", "name": repo, "actions": ["pull", "push"]}]
    await push(http, registry_url, repo, "v1", token)


async def test_other_services_get_no_registry_access(http, auth_url, service_secrets):
    basic = {"Authorization": aiohttp.encode_basic_auth("storage", service_secrets["storage"])}
    token = await registry_token(http, auth_url, "repository:x/y:pull,push", basic)
    assert jwt.decode(token, options={"verify_signature": False})["access"] == []


async def test_service_secret_under_another_client_id_is_401(http, auth_url, service_secrets):
    basic = {"Authorization": aiohttp.encode_basic_auth("ecr-api", service_secrets["builder"])}
    status, _ = await call(
        http,
        "GET",
        f"{auth_url}/auth/registry/token",
        params={"service": "sage-registry", "scope": "repository:x/y:push"},
        headers=basic,
    )
    assert status == 401


async def test_docker_login_style_basic_with_a_user_token_works(
    http, auth_url, registry_url, make_user
):
    name = f"dockerlogin-{uuid.uuid4().hex[:8]}"
    admin = await make_user(name, admin=True)
    repo = repo_name()
    basic = {"Authorization": aiohttp.encode_basic_auth(name, admin)}
    token = await registry_token(http, auth_url, f"repository:{repo}:pull,push", basic)
    await push(http, registry_url, repo, "latest", token)
    # a wrong password is a failed login
    wrong = {"Authorization": aiohttp.encode_basic_auth(name, "sage_wrong")}
    status, _ = await call(
        http,
        "GET",
        f"{auth_url}/auth/registry/token",
        params={"service": "sage-registry"},
        headers=wrong,
    )
    assert status == 401


async def test_token_signed_by_another_key_is_refused(
    http, auth_url, registry_url, make_user, tmp_path: Path
):
    admin = await make_user(f"forger-{uuid.uuid4().hex[:8]}", admin=True)
    repo = repo_name()
    genuine = await registry_token(
        http, auth_url, f"repository:{repo}:pull,push", {"Authorization": f"sage {admin}"}
    )
    claims = jwt.decode(genuine, options={"verify_signature": False})
    forged = Signer.from_dir(tmp_path).sign(claims)
    assert await upload(http, registry_url, repo, b"forged", forged) == 401
    assert await upload(http, registry_url, repo, b"genuine", genuine) == 201


async def test_registry_token_claims_and_jwks(http, auth_url, auth_config, make_user):
    name = f"claims-{uuid.uuid4().hex[:8]}"
    admin = await make_user(name, admin=True)
    token = await registry_token(
        http, auth_url, "repository:a/b:pull repository:c/d:*", {"Authorization": f"sage {admin}"}
    )
    status, jwks = await call(http, "GET", f"{auth_url}/auth/jwks.json")
    assert status == 200
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["x5c"] and header["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = jwt.decode(token, key=key, algorithms=["RS256"], audience=auth_config.registry_service)
    assert claims["iss"] == auth_config.registry_issuer and claims["sub"] == name
    assert claims["nbf"] <= claims["iat"] < claims["exp"] and claims["jti"]
    assert claims["access"] == [
        {"type": "repository", "name": "a/b", "actions": ["pull"]},
        {"type": "repository", "name": "c/d", "actions": ["*"]},
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"service": "another-registry"},
        {"scope": "repository"},
        {"scope": "repository:a/b"},
        {"scope": "repository:a/b:PULL"},
        {"scope": "repository:a b:pull"},
    ],
)
async def test_bad_registry_token_requests_are_400(http, auth_url, params):
    status, body = await call(http, "GET", f"{auth_url}/auth/registry/token", params=params)
    assert status == 400 and body["status"] == 400
