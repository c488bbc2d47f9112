"""Bulk catalogues for the ECR benchmarks: one real submission as the template, then COPY.

Submitting 100,000 versions through the API would take longer than the benchmark itself, so one
version goes through the real use case (its stored document, description and search vector are
what the service writes) and every other version is that document with its names changed,
written with one COPY per table. The mix is fixed: of every ten namespaces the viewer owns five,
another user shares two with them (a namespace READ grant), makes the repositories of two public
and keeps one to themselves. Apps carry one of five topics, so `?q=audio` matches a fifth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

from sage_common.auth import Principal
from sage_ecr import service_submit
from sage_ecr.service import Ecr
from sage_ecr.spectypes import version_key
from sage_ecr.views import DOC_VERSION
from tests.support.ecr import app_spec

APPS_PER_NAMESPACE, VERSIONS_PER_APP = 10, 10
PER_NAMESPACE = APPS_PER_NAMESPACE * VERSIONS_PER_APP
TOPICS = ["camera", "audio", "lidar", "thermal", "weather"]
OTHER = "bench-other"


@dataclass
class Catalogue:
    """How many namespaces are stored so far, and the template the next ones copy."""

    viewer: str
    template: dict[str, object]
    namespaces: int = 0

    @property
    def versions(self) -> int:
        return self.namespaces * PER_NAMESPACE


async def template(ecr: Ecr, viewer: str) -> Catalogue:
    """Submit one version through the real use case and keep its stored document as the
    template, then remove it (the catalogue starts empty)."""
    who = Principal(username=viewer, is_approved=True)
    await service_submit.submit(
        ecr, who, service_submit.validate_spec(app_spec("benchtemplate", "app", "1.0.0"))
    )
    async with ecr.store.pool.acquire() as conn:
        doc = await conn.fetchval("SELECT doc::text FROM apps WHERE namespace = 'benchtemplate'")
        for sql in (
            "DELETE FROM apps WHERE namespace = 'benchtemplate'",
            "DELETE FROM permissions WHERE resource_name LIKE 'benchtemplate%'",
            "DELETE FROM repositories WHERE namespace = 'benchtemplate'",
            "DELETE FROM namespaces WHERE name = 'benchtemplate'",
        ):
            await conn.execute(sql)
    return Catalogue(viewer=viewer, template=json.loads(doc))


def _owner(cat: Catalogue, n: int) -> str:
    return cat.viewer if n % 10 < 5 else OTHER


async def grow(conn: asyncpg.Connection, cat: Catalogue, versions: int) -> None:
    """Add namespaces until the catalogue holds `versions` versions; ANALYZE after."""
    first, last = cat.namespaces, versions // PER_NAMESPACE
    namespaces, repositories, grants, rows = [], [], [], []
    for n in range(first, last):
        ns, owner = f"bench{n}", _owner(cat, n)
        namespaces.append((ns, owner))
        grants.append(("namespace", ns, "USER", owner, "FULL_CONTROL"))
        if n % 10 in (5, 6):
            grants.append(("namespace", ns, "USER", cat.viewer, "READ"))
        for a in range(APPS_PER_NAMESPACE):
            name, topic = f"app{a}", TOPICS[a % len(TOPICS)]
            repositories.append((ns, name, owner))
            grants.append(("repository", f"{ns}/{name}", "USER", owner, "FULL_CONTROL"))
            if n % 10 in (7, 8):
                grants.append(("repository", f"{ns}/{name}", "GROUP", "AllUsers", "READ"))
            for v in range(VERSIONS_PER_APP):
                rows.append(_version(cat, ns, name, f"1.{v}.0", owner, topic))
    await conn.copy_records_to_table("namespaces", records=namespaces, columns=["name", "owner"])
    await conn.copy_records_to_table(
        "repositories", records=repositories, columns=["namespace", "name", "owner"]
    )
    await conn.copy_records_to_table(
        "permissions",
        records=grants,
        columns=["resource_type", "resource_name", "grantee_type", "grantee", "permission"],
    )
    await conn.execute(
        """CREATE TEMP TABLE seed (namespace text, name text, version text, version_key text,
            owner text, description text, keywords text, doc text) ON COMMIT PRESERVE ROWS"""
    )
    await conn.copy_records_to_table("seed", records=rows)
    await conn.execute(
        """INSERT INTO apps (namespace, name, version, version_key, owner, spec, architectures,
                             gpu, state, search, doc, doc_version)
           SELECT s.namespace, s.name, s.version, s.version_key, s.owner, '{}', $1, 'optional',
                  'submitted',
                  setweight(to_tsvector('english', s.name), 'A')
                  || setweight(to_tsvector('english', s.keywords), 'A')
                  || setweight(to_tsvector('english', s.description), 'B'),
                  s.doc::json, $2
           FROM seed s""",
        ["linux/amd64", "linux/arm64"],
        DOC_VERSION,
    )
    await conn.execute("DROP TABLE seed")
    await conn.execute("ANALYZE")
    cat.namespaces = last


def _version(
    cat: Catalogue, ns: str, name: str, version: str, owner: str, topic: str
) -> tuple[str, ...]:
    description = f"{name}: counts things in {topic} data"
    keywords = [topic, "counting"]
    doc = dict(cat.template)
    source = dict(doc["source"])  # type: ignore[call-overload]
    source["url"] = f"https://git.example.org/{ns}/{name}.git"
    doc.update(
        id=f"{ns}/{name}:{version}",
        namespace=ns,
        name=name,
        version=version,
        description=description,
        keywords=", ".join(keywords),
        keyword_list=keywords,
        source=source,
        owner=owner,
    )
    return (
        ns,
        name,
        version,
        version_key(version),
        owner,
        description,
        " ".join(keywords),
        json.dumps(doc),
    )
