"""The registry configurations of docker-compose and Kubernetes, served by a real registry.

Debian's docker-registry (distribution 2.8, installed by scripts/setup.sh) runs each committed
config with only its addresses and paths moved under a temporary directory on loopback. Tokens are
signed by the auth service's own Signer, so these tests show the registry trusts what auth
issues, and that the key rotation of docs/operations.md (a bundle of old and new certificates)
keeps both keys' tokens valid while refusing any other key.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml

from sage_auth.config import Config as AuthConfig
from sage_auth.signing import Signer
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_CONFIG = ROOT / "deploy/registry/config.yml"
K8S_CONFIG = ROOT / "deploy/k8s/base/registry/config.yml"


def _status(url: str, token: str | None = None) -> tuple[int, Message]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers


@contextmanager
def serve(config: dict[str, Any], workdir: Path, env: dict[str, str]) -> Iterator[str]:
    """Run docker-registry on `config`; yield its base URL once /debug/health answers."""
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry (Debian) is installed by scripts/setup.sh"
    port, debug = free_port(), free_port()
    config["http"]["addr"] = f"127.0.0.1:{port}"
    config["http"]["debug"]["addr"] = f"127.0.0.1:{debug}"
    path = workdir / "config.yml"
    path.write_text(yaml.safe_dump(config))
    run_env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"} | env
    log = (workdir / "registry.log").open("w")
    process = subprocess.Popen([binary, "serve", str(path)], stdout=log, stderr=log, env=run_env)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (workdir / "registry.log").read_text()[-2000:]
            try:
                if _status(f"http://127.0.0.1:{debug}/debug/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the registry did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def token(signer: Signer, auth: AuthConfig) -> str:
    now = int(time.time())
    claims = {
        "iss": auth.registry_issuer,
        "aud": auth.registry_service,
        "sub": "service:builder",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "access": [],
    }
    return signer.sign(claims)


def test_compose_registry_trusts_the_certificate_the_auth_service_makes(tmp_path: Path) -> None:
    auth = AuthConfig()
    keys = tmp_path / "auth-keys"
    signer = Signer.from_dir(keys)  # what the auth service does on its first start
    config = yaml.safe_load(COMPOSE_CONFIG.read_text())
    assert config["auth"]["token"]["rootcertbundle"].endswith("/registry.crt")
    config["auth"]["token"]["rootcertbundle"] = str(keys / "registry.crt")
    config["storage"]["filesystem"]["rootdirectory"] = str(tmp_path / "data")
    with serve(config, tmp_path, {}) as url:
        status, headers = _status(f"{url}/v2/")
        assert status == 401
        challenge = headers["WWW-Authenticate"]
        assert 'realm="http://localhost:8080/auth/registry/token"' in challenge
        assert f'service="{auth.registry_service}"' in challenge
        assert _status(f"{url}/v2/", token(signer, auth))[0] == 200


def test_k8s_registry_accepts_old_and_new_keys_during_a_rotation(tmp_path: Path) -> None:
    auth = AuthConfig()
    old, new, stranger = (Signer.from_dir(tmp_path / n) for n in ("old", "new", "stranger"))
    bundle = tmp_path / "bundle.crt"
    bundle.write_text(
        (tmp_path / "old/registry.crt").read_text() + (tmp_path / "new/registry.crt").read_text()
    )
    config = yaml.safe_load(K8S_CONFIG.read_text())
    assert config["storage"]["s3"]["bucket"] and config["storage"]["redirect"]["disable"] is True
    config["auth"]["token"]["rootcertbundle"] = str(bundle)
    # The S3 endpoint is only contacted on the first image request, never by these.
    env = {
        "REGISTRY_STORAGE_S3_REGIONENDPOINT": "http://127.0.0.1:9",
        "REGISTRY_STORAGE_S3_ACCESSKEY": "unused",
        "REGISTRY_STORAGE_S3_SECRETKEY": "unused",
        "REGISTRY_HTTP_SECRET": "test-secret",
        "REGISTRY_AUTH_TOKEN_REALM": "https://sage.test/auth/registry/token",
    }
    with serve(config, tmp_path, env) as url:
        status, headers = _status(f"{url}/v2/")
        assert status == 401
        assert 'realm="https://sage.test/auth/registry/token"' in headers["WWW-Authenticate"]
        assert _status(f"{url}/v2/", token(old, auth))[0] == 200
        assert _status(f"{url}/v2/", token(new, auth))[0] == 200
        assert _status(f"{url}/v2/", token(stranger, auth))[0] == 401


@pytest.mark.parametrize("path", [COMPOSE_CONFIG, K8S_CONFIG], ids=["compose", "k8s"])
def test_registry_configs_take_tokens_from_the_auth_service(path: Path) -> None:
    auth = AuthConfig()
    token_config = yaml.safe_load(path.read_text())["auth"]["token"]
    assert token_config["service"] == auth.registry_service
    assert token_config["issuer"] == auth.registry_issuer
    assert token_config["realm"].endswith("/auth/registry/token")
    assert yaml.safe_load(path.read_text())["storage"]["delete"]["enabled"] is True
