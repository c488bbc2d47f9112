"""SAGE's own storage API (sagecontinuum/sage-storage-api, Go + MySQL) beside ours, same S3.

`SAGE_STORAGE_API_CHECKOUT` names a checkout of it with the server built in it as `server` (its
Dockerfile's `go build -o server .`; Debian's golang-go 1.19 builds it in GOPATH mode from
Debian's golang-*-dev packages, `GO111MODULE=off GOPATH=/usr/share/gocode`, for lack of access
to the Go module proxy). Its `server.go` listens on ":8080", every interface and a fixed port;
this bench runs servers on loopback only, on free ports, so it skips such a checkout: build it
with that one line reading `http.ListenAndServe(os.Getenv("LISTEN_ADDR"), r)`, and the bench
gives it 127.0.0.1 and a free port there. Nothing else of it is changed. The `mysql` client creates its database from
the checkout's `init.sql` (dropped after). Token checks are off on their side (`TESTING_NOAUTH=1`,
a token `user:<name>` names the caller): its every request would otherwise ask the token
service, so the comparison flatters it. Ours runs as `bench_storage` runs it, with its token
checks, against the same S3 server (`rclone serve s3`).

Figures, ours vs theirs: 200 concurrent 64 KiB uploads (the same multipart form to both, the
best of SMALL_ROUNDS rounds by wall time) and one 64 KiB object's download under CLIENTS clients.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench._load import closed_loop, latency_ms
from bench._sage_ecr import MYSQL_HOST, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER
from bench._sage_servers import child_server
from tests.support.ports import free_port

SMALL, SMALL_ROUNDS = 64 * 1024, 3
AT_ONCE = (50, 200)  # uploads started together
CLIENTS, WARMUP_SECONDS, RUN_SECONDS = 32, 1.0, 5.0
LISTEN = 'ListenAndServe(os.Getenv("LISTEN_ADDR")'
USER = "benchuser"


def skipped(why: str) -> list[dict[str, Any]]:
    return [{"name": "sage-storage-api: skipped", "value": None, "unit": "", "detail": why}]


def _why_not(folder: Path) -> str | None:
    if not (folder / "server").is_file():
        return f"SAGE_STORAGE_API_CHECKOUT={folder} has no built `server` (go build -o server .)"
    source = (folder / "server.go").read_text(errors="replace")
    if LISTEN not in source:
        return (
            f'{folder}/server.go listens on a fixed address (as published, ":8080": every '
            f"interface); build it with {LISTEN}, r) so that it can be given a loopback one"
        )
    if shutil.which("mysql") is None:
        return "no `mysql` client on PATH to create its database"
    return None


def _mysql(sql: str, database: str = "") -> None:
    argv = ["mysql", f"--host={MYSQL_HOST}", f"--port={MYSQL_PORT}", f"--user={MYSQL_USER}"]
    argv += [f"--password={MYSQL_PASSWORD}"] if MYSQL_PASSWORD else []
    done = subprocess.run(  # noqa: S603 - the mysql client, with the bench's settings
        [*argv, *([database] if database else [])], input=sql.encode(), capture_output=True
    )
    if done.returncode:
        raise RuntimeError(f"mysql failed: {done.stderr.decode()[-1000:]}")


# MySQL 8's built-ins (one-argument form, as their code calls them), where MariaDB lacks them.
UUID_FUNCTIONS = """
CREATE FUNCTION IF NOT EXISTS UUID_TO_BIN(u CHAR(36)) RETURNS BINARY(16) DETERMINISTIC
  RETURN UNHEX(REPLACE(u, '-', ''));
CREATE FUNCTION IF NOT EXISTS BIN_TO_UUID(b BINARY(16)) RETURNS CHAR(36) DETERMINISTIC
  RETURN LOWER(CONCAT_WS('-', HEX(SUBSTR(b, 1, 4)), HEX(SUBSTR(b, 5, 2)), HEX(SUBSTR(b, 7, 2)),
                             HEX(SUBSTR(b, 9, 2)), HEX(SUBSTR(b, 11, 6))));
"""


def _is_mariadb() -> bool:
    argv = ["mysql", f"--host={MYSQL_HOST}", f"--port={MYSQL_PORT}", f"--user={MYSQL_USER}"]
    argv += [f"--password={MYSQL_PASSWORD}"] if MYSQL_PASSWORD else []
    done = subprocess.run(  # noqa: S603 - the mysql client, with the bench's settings
        [*argv, "-N", "-e", "SELECT VERSION()"], capture_output=True, check=True
    )
    return b"mariadb" in done.stdout.lower()


def _form(name: str, body: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", body, filename=name, content_type="application/octet-stream")
    return form


async def _small_uploads(http: aiohttp.ClientSession, base: str, count: int) -> dict[str, Any]:
    """`count` uploads of SMALL bytes, all at once: p50/p99 of those that succeeded, stored
    uploads per second of wall time, and what failed (the first answer kept)."""
    body = os.urandom(SMALL)
    latencies: list[float] = []
    failed: list[str] = []

    async def one(i: int) -> None:
        start = time.perf_counter()
        async with http.put(f"{base}/small/{i}.bin", data=_form(f"{i}.bin", body)) as r:
            text = await r.text()
        if r.status == 200:
            latencies.append(time.perf_counter() - start)
        else:
            failed.append(f"{r.status} {' '.join(text.split())[:240]}")

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    wall = time.perf_counter() - start
    if not latencies:
        raise RuntimeError(f"every upload failed, e.g. {failed[0]}")
    return {
        **latency_ms(latencies),
        "rate": len(latencies) / wall,
        "wall": wall,
        "failed": len(failed),
        "failure": failed[0] if failed else "",
    }


async def _measure(url: str, headers: dict[str, str]) -> dict[str, Any]:
    """Each AT_ONCE level's best round (by wall time), then downloads of what was stored."""
    connector = aiohttp.TCPConnector(limit=max(AT_ONCE))
    found: dict[str, Any] = {}
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
        async with http.post(f"{url}/api/v1/objects", params={"type": "model"}) as r:
            if r.status not in (200, 201):
                raise RuntimeError(f"bucket creation answered {r.status}: {await r.text()}")
            bucket = (await r.json())["id"]
        base = f"{url}/api/v1/objects/{bucket}"
        for count in AT_ONCE:
            await _small_uploads(http, base, count)  # warm up: connections, caches, statements
            rounds = [await _small_uploads(http, base, count) for _ in range(SMALL_ROUNDS)]
            found[f"upload{count}"] = min(rounds, key=lambda r: r["wall"])
            found[f"upload{count}"]["failed"] = sum(r["failed"] for r in rounds)
            found[f"upload{count}"]["failure"] = next(
                (r["failure"] for r in rounds if r["failure"]), ""
            )

    async def get(http: aiohttp.ClientSession, i: int) -> None:
        async with http.get(f"{base}/small/{i % min(AT_ONCE)}.bin") as r:
            body = await r.read()
            if r.status != 200 or len(body) != SMALL:
                raise RuntimeError(f"download answered {r.status}, {len(body)} bytes")

    found["download"] = await closed_loop(
        get,
        clients=CLIENTS,
        warmup_seconds=WARMUP_SECONDS,
        run_seconds=RUN_SECONDS,
        headers=headers,
    )
    return found


async def _theirs(folder: Path, s3: dict[str, str]) -> dict:
    database = f"sage_storage_bench_{uuid.uuid4().hex[:8]}"
    bucket = f"sage-bench-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_make_bucket, s3, bucket)
    port = free_port()
    init = (folder / "init.sql").read_text().replace("SageStorage.", "")
    await asyncio.to_thread(_mysql, f"CREATE DATABASE `{database}`")
    try:
        await asyncio.to_thread(_mysql, init, database)
        if await asyncio.to_thread(_is_mariadb):
            await asyncio.to_thread(_mysql, UUID_FUNCTIONS, database)
        env = {
            "s3Endpoint": f"http://{s3['endpoint']}",
            "s3accessKeyID": s3["access"],
            "s3secretAccessKey": s3["secret"],
            "s3bucket": bucket,
            "MYSQL_HOST": f"{MYSQL_HOST}:{MYSQL_PORT}",
            "MYSQL_DATABASE": database,
            "MYSQL_USER": MYSQL_USER,
            "MYSQL_PASSWORD": MYSQL_PASSWORD,
            "TESTING_NOAUTH": "1",
            "LISTEN_ADDR": f"127.0.0.1:{port}",
        }
        url = f"http://127.0.0.1:{port}"
        async with child_server([str(folder / "server")], env=env, ready_url=f"{url}/", cwd=folder):
            headers = {"Authorization": f"sage user:{USER}"}
            return await _measure(url, headers)
    finally:
        await asyncio.to_thread(_mysql, f"DROP DATABASE IF EXISTS `{database}`")


def _make_bucket(s3: dict[str, str], bucket: str) -> None:
    from minio import Minio

    client = Minio(s3["endpoint"], s3["access"], s3["secret"], secure=False, region="us-east-1")
    client.make_bucket(bucket)


def _compare(
    name: str, ours: dict[str, Any], them: dict[str, Any], rate: str, note: str = ""
) -> list[dict[str, Any]]:
    return [
        {
            "name": f"{name} {rate}, ours vs sage",
            "value": ours[rate],
            "unit": "/s",
            "baseline": them[rate],
            "ratio": ours[rate] / them[rate],
            "target": ">= 1",
            "detail": note,
        },
        *(
            {
                "name": f"{name} {p}, ours vs sage",
                "value": ours[p],
                "unit": "ms",
                "baseline": them[p],
                "ratio": ours[p] / them[p],
                "target": "<= 1",
            }
            for p in ("p50", "p99")
        ),
    ]


def _failures(ours: dict[str, Any], them: dict[str, Any]) -> str:
    """What failed over the rounds on each side; a rate counts stored uploads only."""
    lines = [f"failed over {SMALL_ROUNDS} rounds: ours {ours['failed']}, sage {them['failed']}"]
    lines += [f"ours, first: {ours['failure']}"] if ours["failure"] else []
    lines += [f"sage, first: {them['failure']}"] if them["failure"] else []
    return "\n".join(lines)


async def rows() -> list[dict[str, Any]]:
    value = os.environ.get("SAGE_STORAGE_API_CHECKOUT", "")
    if not value:
        return skipped("SAGE_STORAGE_API_CHECKOUT is not set (see bench/_sage_storage.py)")
    folder = Path(value)
    if why := _why_not(folder):
        return skipped(why)
    from bench.bench_storage import running

    async with running() as ours_running:
        them = await _theirs(folder, ours_running.s3)
        ours = await _measure(ours_running.url, {"Authorization": f"sage {ours_running.token}"})
    found = []
    for n in AT_ONCE:
        up_ours, up_them = ours[f"upload{n}"], them[f"upload{n}"]
        name = f"storage {n} x 64 KiB uploads at once"
        found += _compare(name, up_ours, up_them, "rate", _failures(up_ours, up_them))
    note = f"{CLIENTS} clients; sage-storage-api with TESTING_NOAUTH=1 (no token check)"
    return found + _compare(
        "storage 64 KiB download", ours["download"], them["download"], "rps", note
    )
