"""The profiler's own Docker engine, as docker-compose.yml starts it, driven over mutual TLS.

`deploy/compose/profiler-engine/entrypoint.sh` is run here for real, with this machine's dockerd:
it makes the certificates, delegates the runs' cgroup subtree, and starts an engine with its own
storage that listens only on TLS-verified TCP (loopback here). The profiler's runner then builds,
runs and measures an app through it, exactly as from compose's profiler container; a client
without the certificate is refused.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException
from requests import RequestException

from sage_profiler.app import make_runner
from sage_profiler.cgroup import detect
from sage_profiler.config import Config
from sage_profiler.runner import RunnerUnavailable, RunSpec
from sage_profiler.runner_docker import DockerRunner, tls_client
from tests.support.ports import free_port
from tests.support.testapps import build_load_image

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "compose" / "profiler-engine" / "entrypoint.sh"
MiB = 1 << 20


@dataclass(frozen=True)
class Engine:
    url: str
    port: int
    certs: Path
    prefix: str
    work: Path


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    # Short paths: containerd's socket lives under the exec root, and a socket path is short.
    base = Path(tempfile.mkdtemp(prefix="spe-"))
    port = free_port()
    prefix = f"sage-profiler-engine-{base.name[4:]}"
    env = {
        **os.environ,
        "ENGINE_CERTS": str(base / "certs"),
        "ENGINE_TLS_NAMES": "localhost 127.0.0.1",
        "ENGINE_TLS_BITS": "2048",
        "ENGINE_LISTEN": f"127.0.0.1:{port}",
        "ENGINE_CGROUP_PREFIX": prefix,
        "ENGINE_WORK_DIR": str(base / "work"),
        "PROFILER_UID": str(os.getuid()),
    }
    log = (base / "engine.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 - a fixed argv
        [
            "/bin/sh",
            str(ENTRYPOINT),
            "--data-root",
            str(base / "data"),
            "--exec-root",
            str(base / "x"),
            "--pidfile",
            str(base / "engine.pid"),
            "--storage-driver",
            "vfs",
        ],  # fmt: skip
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    found = Engine(f"tcp://127.0.0.1:{port}", port, base / "certs", prefix, base / "work")
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (base / "engine.log").read_text()[-3000:]
            try:
                client = tls_client(found.url, found.certs / "client")
                client.ping()
                client.close()
                break
            except (DockerException, RequestException, RunnerUnavailable):  # certs, then dockerd
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield found
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        detect().remove(prefix)
        shutil.rmtree(base, ignore_errors=True)


def test_the_engine_is_its_own_and_answers_only_over_mutual_tls(engine: Engine) -> None:
    client = tls_client(engine.url, engine.certs / "client")
    try:
        info = client.info()
    finally:
        client.close()
    assert info["CgroupDriver"] == "cgroupfs"
    assert info["DockerRootDir"] == str(engine.certs.parent / "data")  # its own storage
    host = docker.from_env()
    try:
        assert info["DockerRootDir"] != host.info()["DockerRootDir"]
    finally:
        host.close()
    # The client's files are the profiler's; the CA and server keys stay with the engine.
    assert sorted(p.name for p in (engine.certs / "client").iterdir()) == [
        "ca.pem", "cert.pem", "key.pem",
    ]  # fmt: skip
    assert (engine.certs / "client" / "key.pem").stat().st_mode & 0o777 == 0o400
    # Without a client certificate the TLS handshake fails; plain HTTP gets nothing either.
    context = ssl.create_default_context(cafile=str(engine.certs / "client" / "ca.pem"))
    with (
        pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)),
        socket.create_connection(("127.0.0.1", engine.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert not tls.recv(100)
    with socket.create_connection(("127.0.0.1", engine.port), timeout=5) as raw:
        raw.sendall(b"GET /_ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert b"OK" not in raw.recv(1000)


def test_a_tcp_engine_without_tls_is_refused_by_the_configuration() -> None:
    with pytest.raises(ValueError, match="only with TLS"):
        Config(docker_url="tcp://profiler-engine:2376")


async def test_the_profiler_runs_and_measures_an_app_through_its_engine(engine: Engine) -> None:
    config = Config(
        docker_url=engine.url,
        docker_tls_dir=engine.certs / "client",
        cgroup_prefix=engine.prefix,
        pull_policy="never",
        gpu="off",
    )
    runner = make_runner(config)
    assert isinstance(runner, DockerRunner)
    try:
        build_load_image(runner.client, "sage-profiler-test/load:engine")
        await runner.prepare("sage-profiler-test/load:engine", None)
        result = await runner.run(
            RunSpec(
                image="sage-profiler-test/load:engine",
                args=["mem=48", "cpu=0.3"],
                memory_bytes=256 * MiB,
                cpus=1.0,
                timeout_seconds=60,
            )
        )
    finally:
        runner.close()
    assert result.exit_code == 0, result.log_tail
    # Measured from the cgroup the profiler made in the delegated subtree, not sampled.
    assert result.measured_by == "cgroup"
    assert 48 * MiB <= result.peak_memory_bytes < 96 * MiB
    assert 0.25 <= result.cpu_seconds < 1.0, result.cpu_seconds
    host = docker.from_env()
    try:  # the app's image is on the profiler's engine, not the host's
        assert not host.images.list(name="sage-profiler-test/load:engine")
    finally:
        host.close()
