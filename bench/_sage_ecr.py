"""SAGE's own ECR (waggle-sensor/sage-ecr, Flask + MySQL) as the side-by-side bench runs it.

The checkout is the operator's: `SAGE_ECR_CHECKOUT` names a folder holding sage-ecr's sources
(`ecr_api.py`, `ecrdb.py`, ...) and `.venv/`, a virtual environment with its `requirements.txt`
installed (mysqlclient needs the MariaDB client headers to build). Nothing of it is in this
project. The bench gives it a private MySQL database, fills it with the same catalogue as ours
(read back from our Postgres, so both hold the same rows), runs it under gunicorn as SAGE deploys
it (`--workers=4`, their Kubernetes config) with its static test tokens, and drops the database.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from bench._sage_servers import child_server
from tests.support.ports import free_port

MYSQL_HOST = os.environ.get("SAGE_BENCH_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = os.environ.get("SAGE_BENCH_MYSQL_PORT", "3306")
MYSQL_USER = os.environ.get("SAGE_BENCH_MYSQL_USER", "root")
MYSQL_PASSWORD = os.environ.get("SAGE_BENCH_MYSQL_PASSWORD", "")
# sage-ecr caches token look-ups in Redis; keys are hashes of the token, kept 60 s.
REDIS = os.environ.get("SAGE_BENCH_REDIS", "127.0.0.1:6379")
WORKERS = 4
VIEWER = "testuser"  # sage-ecr's static token `testuser_token` is this user
TOKEN = "testuser_token"

# Run by the checkout's own Python (it has MySQLdb): create or drop the database, create
# sage-ecr's tables with its own `initdb`, insert the rows given on stdin.
_SETUP = r"""
import json, os, sys
import MySQLdb
action, database = sys.argv[1], sys.argv[2]
server = MySQLdb.connect(host=os.environ["MYSQL_HOST"], port=int(os.environ["MYSQL_PORT"]),
                         user=os.environ["MYSQL_USER"], passwd=os.environ["MYSQL_PASSWORD"])
if action == "drop":
    server.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")
    sys.exit(0)
server.cursor().execute(f"CREATE DATABASE `{database}`")
from ecrdb import EcrDB
db = EcrDB(retries=0)
db.initdb()
for table, columns, rows in json.load(sys.stdin):
    marks = ", ".join(["%s"] * len(columns))
    db.cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
db.db.commit()
"""


def checkout() -> Path | None:
    value = os.environ.get("SAGE_ECR_CHECKOUT", "")
    return Path(value) if value else None


def missing(folder: Path) -> str | None:
    """Why `folder` cannot be run, or None."""
    for need in ("ecr_api.py", "ecrdb.py", ".venv/bin/python", ".venv/bin/gunicorn"):
        if not (folder / need).exists():
            return f"SAGE_ECR_CHECKOUT={folder} has no {need}"
    return None


def _env(database: str) -> dict[str, str]:
    host, _, port = REDIS.partition(":")
    return {
        "MYSQL_HOST": MYSQL_HOST,
        "MYSQL_PORT": MYSQL_PORT,
        "MYSQL_DATABASE": database,
        "MYSQL_USER": MYSQL_USER,
        "MYSQL_PASSWORD": MYSQL_PASSWORD,
        "REDIS_HOST": host,
        "REDIS_PORT": port or "6379",
        "AUTH_METHOD": "static",
    }


def _setup(folder: Path, action: str, database: str, rows: list[Any] | None = None) -> None:
    done = subprocess.run(  # noqa: S603 - the checkout's own interpreter
        [str(folder / ".venv/bin/python"), "-c", _SETUP, action, database],
        cwd=folder,
        env={**os.environ, **_env(database)},
        input=json.dumps(rows or []).encode(),
        capture_output=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"sage-ecr {action} failed: {done.stderr.decode()[-2000:]}")


async def their_rows(conn: asyncpg.Connection, viewer: str) -> list[Any]:
    """Our catalogue as sage-ecr's tables hold it; our viewer becomes their `testuser`."""

    def who(name: str) -> str:
        return VIEWER if name == viewer else name

    namespaces = [
        [r["name"], who(r["owner"])] for r in await conn.fetch("SELECT * FROM namespaces")
    ]
    repositories = [
        [r["namespace"], r["name"], who(r["owner"])]
        for r in await conn.fetch("SELECT namespace, name, owner FROM repositories")
    ]
    grants = [
        [r[0], r[1], r[2], who(r[3]), r[4]]
        for r in await conn.fetch(
            "SELECT resource_type, resource_name, grantee_type, grantee, permission"
            " FROM permissions"
        )
    ]
    apps, sources = [], []
    for (text,) in await conn.fetch("SELECT doc::text FROM apps"):
        doc = json.loads(text)
        src = doc["source"]
        apps.append(
            [doc["id"], doc["namespace"], doc["name"], doc["version"], doc["description"]]
            + [doc[k] for k in ("keywords", "authors", "collaborators", "homepage", "license")]
            + [json.dumps(doc["inputs"]), json.dumps(doc["metadata"])]
            + [json.dumps(doc["testing"], separators=(",", ":"))[:256], who(doc["owner"])]
        )
        sources.append(
            [doc["id"], json.dumps(src["architectures"]), src["url"], src["branch"], src["tag"]]
            + [src["directory"], src["dockerfile"], json.dumps(src["build_args"])]
        )
    app_columns = "id namespace name version description keywords authors collaborators"
    return [
        ["Namespaces", ["id", "owner_id"], namespaces],
        ["Repositories", ["namespace", "name", "owner_id"], repositories],
        ["Permissions", ["resourceType", "resourceName", "granteeType", "grantee", "permission"], grants],
        ["Apps", [*app_columns.split(), "homepage", "license", "inputs", "metadata", "testing", "owner"], apps],
        ["Sources", ["id", "architectures", "url", "branch", "tag", "directory", "dockerfile", "build_args"], sources],
    ]  # fmt: skip


@asynccontextmanager
async def running(folder: Path, rows: list[Any]) -> AsyncIterator[str]:
    """sage-ecr serving `rows` from a private database; yields its base URL."""
    database = f"sage_ecr_bench_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_setup, folder, "create", database, rows)
    try:
        port = free_port()
        argv = [str(folder / ".venv/bin/gunicorn"), "ecr_api:app", f"--workers={WORKERS}"]
        argv += [f"--bind=127.0.0.1:{port}", "--log-level=warning"]
        url = f"http://127.0.0.1:{port}"
        async with child_server(argv, env=_env(database), ready_url=f"{url}/healthy", cwd=folder):
            yield url
    finally:
        await asyncio.to_thread(_setup, folder, "drop", database)
