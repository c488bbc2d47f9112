"""The real gateway (nginx with deploy/gateway/nginx.conf) passes the services' CORS and JSON
answers through unchanged: a portal's preflight reaches the ECR API, every answer carries exactly
one Access-Control-Allow-Origin, and the Content-Type stays `application/json`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sage_ecr.config import Config
from tests.support.ecr import start_ecr
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
PORTAL = "http://localhost:3000"


def render(var: Path, port: int, upstreams: dict[int, int]) -> Path:
    """The template as scripts/infra.sh renders it, on `port`, its upstreams moved to test ports."""
    text = (ROOT / "deploy/gateway/nginx.conf").read_text()
    text = text.replace("@VAR@", str(var)).replace("@LISTEN@", f"        listen 127.0.0.1:{port};")
    if os.geteuid() == 0:
        text = text.replace("@USER@", "root")
    else:
        text = "\n".join(line for line in text.splitlines() if "@USER@" not in line)
    for default, test in upstreams.items():
        text = text.replace(f"server 127.0.0.1:{default};", f"server 127.0.0.1:{test};")
    for sub in ("run", "gateway/tmp"):
        (var / sub).mkdir(parents=True, exist_ok=True)
    conf = var / "gateway" / "nginx.conf"
    conf.write_text(text)
    return conf


@pytest.fixture(scope="module")
async def ecr(database_url, auth_settings):
    config = Config(
        database_url=database_url,
        db_schema=f"ecr_gw_{uuid.uuid4().hex[:8]}",
        use_bus=False,
        cors_origins=["http://localhost:*"],
        **auth_settings("ecr-api"),
    )
    running = await start_ecr(config)
    yield running
    await running.stop()


@pytest.fixture(scope="module")
def nginx(ecr, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    var = tmp_path_factory.mktemp("gateway-var")
    port = free_port()
    ecr_port = int(ecr.url.rsplit(":", 1)[1])
    conf = render(var, port, {8082: ecr_port})
    proc = subprocess.Popen(
        [binary, "-p", f"{var}/gateway/", "-e", f"{var}/gateway/error.log", "-c", str(conf)]
        + ["-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, (var / "gateway" / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not listen"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_a_preflight_goes_through_the_gateway_and_comes_back_once(nginx):
    async with aiohttp.ClientSession() as http:
        headers = {
            "Origin": PORTAL,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        }
        async with http.options(f"{nginx}/api/apps/", headers=headers) as resp:
            assert resp.status == 204
            assert resp.headers.getall("Access-Control-Allow-Origin") == [PORTAL]
            assert "authorization" in resp.headers["Access-Control-Allow-Headers"].lower()
        async with http.get(f"{nginx}/api/apps", headers={"Origin": PORTAL}) as resp:
            assert resp.status == 200
            assert resp.headers.getall("Access-Control-Allow-Origin") == [PORTAL]
            assert resp.headers["Content-Type"] == "application/json"
        async with http.get(f"{nginx}/api/apps/a/b/1.0", headers={"Origin": PORTAL}) as resp:
            assert resp.status == 404
            assert resp.headers.getall("Access-Control-Allow-Origin") == [PORTAL]
            assert resp.headers["Content-Type"] == "application/problem+json"


def test_no_gateway_configuration_adds_cors_headers_of_its_own():
    """A second Access-Control-Allow-Origin (from nginx or the Ingress) makes browsers refuse."""
    for path in (
        "deploy/gateway/nginx.conf",
        "deploy/compose/nginx.conf",
        "deploy/k8s/base/ingress.yaml",
    ):
        lines = [
            line
            for line in (ROOT / path).read_text().splitlines()
            if not line.strip().startswith("#")
        ]
        text = "\n".join(lines).lower()
        assert "access-control" not in text and "enable-cors" not in text, path
