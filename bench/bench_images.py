"""The shipped images: size, cold start to ready, memory at idle (`make bench BENCH_ARGS=images`).

The five images are built by `scripts/images.sh` (the layer cache makes that quick when nothing
changed). Each is then started alone, as compose starts it (host networking here: the Docker
bridge is off), against real dependencies: a fresh Postgres database, the machine's RabbitMQ, an
S3 server (`rclone serve s3`). The builder gets compose's security options (its /readyz makes a
build sandbox); the profiler drives the host's engine through its socket, as root, which is the
Kubernetes `profiler-docker-node` setting (compose's own TLS engine is what the test layer uses).
- size: the image as the engine stores it (uncompressed); target < 200 MB for auth, ecr-api and
  storage. The builder carries buildah, uidmap and git (Debian's), the profiler the Docker SDK and
  NVML: their sizes are reported against the same 200 MB and explained in docs/operations.md.
- ready: from `docker run` to the first 200 from /readyz (polled every 50 ms); target < 5 s.
- idle memory: what `docker stats` reports 5 s after ready (page cache excluded).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000
SIZE_TARGET_MB = 200.0
READY_TARGET_S = 5.0
ADMIN_DSN = os.environ.get("SAGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("SAGE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
BUILDER_SECURITY = ("seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined")


def _docker(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"docker {args[0]}: {done.stderr.strip()}")
    return done.stdout


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _psql(dsn: str, sql: str) -> None:
    subprocess.run(["psql", dsn, "-qc", sql], check=True, capture_output=True, timeout=60)


def _memory_mb(name: str) -> float:
    usage = _docker("stats", "--no-stream", "--format", "{{.MemUsage}}", name).split("/")[0]
    number = float("".join(c for c in usage if c.isdigit() or c == "."))
    unit = usage.strip().lstrip("0123456789.")
    return number * {"B": 1e-6, "KiB": 1.024e-3, "MiB": 1.048576, "GiB": 1073.741824}[unit]


def _start_to_ready(
    name: str, image: str, env: dict[str, str], port: int, extra: list[str], work: Path
) -> tuple[float, float]:
    env_file = work / f"{name}.env"
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    start = time.monotonic()
    _docker(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "--init",
        "--env-file",
        str(env_file),
        *extra,
        image,
    )
    try:
        deadline = start + 60
        while not _answers(f"http://127.0.0.1:{port}/readyz"):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name} not ready in 60 s:\n{_docker('logs', '--tail', '30', name)}"
                )
            time.sleep(0.05)
        ready = time.monotonic() - start
        time.sleep(5)
        return ready, _memory_mb(name)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


async def main() -> list[dict[str, Any]]:
    return await asyncio.to_thread(_measure)


def _measure() -> list[dict[str, Any]]:
    subprocess.run([str(ROOT / "scripts" / "images.sh")], check=True, timeout=1800)
    s = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="sage-bench-images-"))
    database = f"sage_bench_images_{s}"
    base, _, _ = ADMIN_DSN.rpartition("/")
    dsn = f"{base}/{database}"
    _psql(ADMIN_DSN, f'CREATE DATABASE "{database}"')
    s3_port = free_port()
    access, secret = "bench", secrets.token_hex(16)
    rclone = subprocess.Popen(
        [str(ROOT / ".venv/bin/rclone"), "serve", "s3", "--addr", f"127.0.0.1:{s3_port}",
         "--auth-key", f"{access},{secret}", str(work / "s3")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    rows: list[dict[str, Any]] = []
    try:
        (work / "s3").mkdir()
        deadline = time.monotonic() + 30
        while not _answers_any(f"http://127.0.0.1:{s3_port}/") and time.monotonic() < deadline:
            time.sleep(0.1)
        for service, prefix in (
            ("auth", "SAGE_AUTH_"), ("ecr-api", "SAGE_ECR_"), ("storage", "SAGE_STORAGE_"),
            ("builder", "SAGE_BUILDER_"), ("profiler", "SAGE_PROFILER_"),
        ):  # fmt: skip
            image = f"{os.environ.get('IMAGE_PREFIX', 'sage')}/{service}:{os.environ.get('IMAGE_TAG', 'dev')}"
            size = int(_docker("image", "inspect", "--format", "{{.Size}}", image)) / MB
            port = free_port()
            env = {
                f"{prefix}ENVIRONMENT": "development",
                f"{prefix}HOST": "127.0.0.1",
                f"{prefix}PORT": str(port),
                f"{prefix}DATABASE_URL": dsn,
                f"{prefix}DB_SCHEMA": f"bench_{service.replace('-', '_')}",
                f"{prefix}AMQP_URL": AMQP_URL,
                f"{prefix}EXCHANGE": f"bench.images.{s}",
                f"{prefix}S3_ENDPOINT": f"127.0.0.1:{s3_port}",
                f"{prefix}S3_ACCESS_KEY": access,
                f"{prefix}S3_SECRET_KEY": secret,
            }
            extra: list[str] = []
            if service == "ecr-api":
                env[f"{prefix}CONSUMER_QUEUE"] = f"bench.images.{s}.ecr"
            if service == "builder":
                env[f"{prefix}QUEUE"] = f"bench.images.{s}.builder"
                env[f"{prefix}CANCEL_QUEUE"] = f"bench.images.{s}.builder-cancel"
                env[f"{prefix}ISOLATION"] = "chroot"
                env[f"{prefix}S3_BUCKET"] = f"bench-logs-{s}"
                for opt in BUILDER_SECURITY:
                    extra += ["--security-opt", opt]
            if service == "profiler":
                env[f"{prefix}QUEUE"] = f"bench.images.{s}.profiler"
                env[f"{prefix}CANCEL_QUEUE"] = f"bench.images.{s}.profiler-cancel"
                env[f"{prefix}DOCKER_URL"] = "unix:///var/run/docker.sock"
                extra += ["--user", "0:0", "--volume", "/var/run/docker.sock:/var/run/docker.sock"]
            ready, memory = _start_to_ready(
                f"sage-bench-{service}-{s}", image, env, port, extra, work
            )
            rows += [
                {"name": f"{service} image size", "value": size, "unit": "MB",
                 "baseline": SIZE_TARGET_MB, "ratio": size / SIZE_TARGET_MB, "target": "< 1"},
                {"name": f"{service} start to ready", "value": ready, "unit": "s",
                 "baseline": READY_TARGET_S, "ratio": ready / READY_TARGET_S, "target": "< 1"},
                {"name": f"{service} memory at idle", "value": memory, "unit": "MB"},
            ]  # fmt: skip
    finally:
        rclone.terminate()
        rclone.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
        _psql(ADMIN_DSN, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        _delete_topology(s)
    return rows


def _answers_any(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False
    return True


def _delete_topology(s: str) -> None:
    """The exchange and queues the services declared on the shared broker."""
    import aio_pika

    from sage_common.bus import queue_names
    from sage_common.work import RETRY_DELAYS as BUILDER_RETRY_DELAYS
    from sage_common.work import RETRY_DELAYS as PROFILER_RETRY_DELAYS

    names = [
        *queue_names(f"bench.images.{s}.ecr"),
        *queue_names(f"bench.images.{s}.builder", BUILDER_RETRY_DELAYS),
        *queue_names(f"bench.images.{s}.builder-cancel"),
        *queue_names(f"bench.images.{s}.profiler", PROFILER_RETRY_DELAYS),
        *queue_names(f"bench.images.{s}.profiler-cancel"),
    ]

    async def go() -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            await channel.exchange_delete(f"bench.images.{s}")
            for name in names:
                await channel.queue_delete(name)

    try:
        asyncio.run(go())
    except Exception as exc:  # noqa: BLE001 - a leftover queue must not hide the figures
        print(json.dumps({"cleanup": type(exc).__name__}))
