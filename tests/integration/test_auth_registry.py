"""Registry tokens against the real registry (Debian's docker-registry) configured to trust them."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import aiohttp
import jwt
import pytest

from sage_auth.signing import Signer
from tests.fixtures.auth import call
from tests.fixtures.registry import MANIFEST, RegistryClient, digest, registry_token, tiny_image


@pytest.fixture
def registry(http, registry_url) -> RegistryClient:
    return RegistryClient(http, registry_url)


def repo_name() -> str:
    return f"test-ns/app-{uuid.uuid4().hex[:8]}"


async def test_admin_pushes_and_pulls_through_the_registry(http, auth_url, registry, make_user):
    admin = await make_user(f"regadm-{uuid.uuid4().hex[:8]}", admin=True)
    repo = repo_name()
    token = await registry_token(
        http, auth_url, f"repository:{repo}:pull,push", {"Authorization": f"sage {admin}"}
    )
    manifest_digest = await registry.push(repo, "v1", token)
    bearer = {"Authorization": f"Bearer {token}", "Accept": MANIFEST}
    async with http.get(f"{registry.url}/v2/{repo}/manifests/v1", headers=bearer) as resp:
        assert resp.status == 200
        assert digest(await resp.read()) == manifest_digest
    _, layer, _ = tiny_image()
    async with http.get(f"{registry.url}/v2/{repo}/blobs/{digest(layer)}", headers=bearer) as resp:
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


async def test_plain_user_may_neither_push_nor_pull_yet(http, auth_url, registry, make_user):
    admin = await make_user(f"regadm-{uuid.uuid4().hex[:8]}", admin=True)
    user = await make_user(f"reguser-{uuid.uuid4().hex[:8]}")
    repo = repo_name()
    scope = f"repository:{repo}:pull,push"
    await registry.push(
        repo, "v1", await registry_token(http, auth_url, scope, {"Authorization": f"sage {admin}"})
    )
    token = await registry_token(http, auth_url, scope, {"Authorization": f"sage {user}"})
    assert await registry.upload(repo, b"nope", token) == 401
    bearer = {"Authorization": f"Bearer {token}", "Accept": MANIFEST}
    async with http.get(f"{registry.url}/v2/{repo}/manifests/v1", headers=bearer) as resp:
        assert resp.status == 401


async def test_no_token_at_all_is_refused(http, registry_url):
    repo = repo_name()
    async with http.post(f"{registry_url}/v2/{repo}/blobs/uploads/") as resp:
        assert resp.status == 401


async def test_builder_service_account_pushes_with_basic_credentials(
    http, auth_url, registry, service_secrets
):
    repo = repo_name()
    basic = {"Authorization": aiohttp.encode_basic_auth("builder", service_secrets["builder"])}
    token = await registry_token(http, auth_url, f"repository:{repo}:pull,push,delete", basic)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "service:builder"
    assert claims["access"] == [
        {"type": "repository", "name": repo, "actions": ["pull", "push", "delete"]}
    ]
    await registry.push(repo, "v1", token)


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
    http, auth_url, registry, make_user
):
    name = f"dockerlogin-{uuid.uuid4().hex[:8]}"
    admin = await make_user(name, admin=True)
    repo = repo_name()
    basic = {"Authorization": aiohttp.encode_basic_auth(name, admin)}
    token = await registry_token(http, auth_url, f"repository:{repo}:pull,push", basic)
    await registry.push(repo, "latest", token)
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
    http, auth_url, registry, make_user, tmp_path: Path
):
    admin = await make_user(f"forger-{uuid.uuid4().hex[:8]}", admin=True)
    repo = repo_name()
    genuine = await registry_token(
        http, auth_url, f"repository:{repo}:pull,push", {"Authorization": f"sage {admin}"}
    )
    claims = jwt.decode(genuine, options={"verify_signature": False})
    forged = Signer.from_dir(tmp_path).sign(claims)
    assert await registry.upload(repo, b"forged", forged) == 401
    assert await registry.upload(repo, b"genuine", genuine) == 201


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
