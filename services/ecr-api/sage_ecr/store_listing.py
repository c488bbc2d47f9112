"""SQL for the documents as served: one app's, and a keyset page of those a viewer may read.

Postgres hands each stored document over as bytes with `public` already spliced in, one row per
version in keyset order; Python only joins them with commas. One row per document, not one value
for the whole page: the page aggregated into one ~130 KB value (100 versions) cost the backend
1.6-1.9 ms of CPU against 0.6-0.7 ms for the same bytes in rows (a large value is allocated and
copied over again on its way out).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from .store_apps import AppFilter
from .store_catalogue import (
    OnConnection,
    Viewer,
    public_repository,
    readable_repository,
    shared_repository,
)

_PUBLIC = public_repository("a.namespace", "a.name")


def _bytea(text: str) -> str:
    return f"'\\x{text.encode().hex()}'::bytea"


# The stored document (`json`, so its text and key order are kept as written) as bytes, its
# closing brace replaced by `, "public": ...}`: byte functions, since text ones such as left()
# count every document's characters.
_DOC = f"""substring(textsend(a.doc::text) FROM 1 FOR octet_length(a.doc::text) - 1)
    || CASE WHEN {_PUBLIC} THEN {_bytea(', "public": true}')}
            ELSE {_bytea(', "public": false}')} END"""


@dataclass
class Page:
    """One listing page: its documents as JSON joined by commas, and the keyset position of its
    last document when more follow (None on the last page)."""

    data: bytes
    more_after: list[str] | None


def listing_sql(
    viewer: Viewer, flt: AppFilter, after: list[str] | None, limit: int
) -> tuple[str, list[Any]]:
    """The listing query and its arguments: up to `limit` + 1 rows (document, keyset position),
    the extra one saying that more follow.

    The access rule and the filters are uncorrelated subqueries Postgres hashes once per query,
    and the rows come in an index's keyset order, so a page reads about a page of rows.
    """
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    @functools.cache
    def who(field: str) -> str:  # the viewer's parameters, made when first used
        return arg(getattr(viewer, field))

    if flt.public and not flt.nopublic:
        # A public repository is readable by all (AllUsers holds READ and nothing else, see
        # acl.py), so the access rule would add nothing but hashing every grant the viewer has.
        where = [f"({_PUBLIC}) IS TRUE"]
    else:
        where = [
            readable_repository(
                "a.namespace",
                "a.name",
                who("username"),
                who("groups"),
                who("everything"),
                via_public=not flt.nopublic,
            )
        ]
        if flt.public:
            # IS TRUE keeps it a filter: a bare EXISTS becomes a semi-join probing the grants per
            # row, while a filter's set of public names is hashed once.
            where.append(f"({_PUBLIC}) IS TRUE")
    if flt.namespace is not None:
        where.append(f"a.namespace = {arg(flt.namespace)}")
    if flt.name is not None:
        where.append(f"a.name = {arg(flt.name)}")
    if flt.owner is not None:
        where.append(f"a.owner = {arg(flt.owner)}")
    if flt.shared:
        where.append(
            shared_repository("a.namespace", "a.name", "a.owner", who("username"), who("groups"))
        )
    if flt.state is not None:
        where.append(f"a.state = {arg(flt.state)}")
    if flt.architecture is not None:
        where.append(f"{arg(flt.architecture)} = ANY(a.architectures)")
    if flt.gpu is not None:
        where.append(f"a.gpu = ANY({arg(flt.gpu)}::text[])")
    if flt.q:
        where.append(f"a.search @@ websearch_to_tsquery('english', {arg(flt.q)})")
    if after is not None:
        where.append(f"(a.namespace, a.name, a.version_key) > ({', '.join(arg(k) for k in after)})")
    sql = f"""SELECT {_DOC} AS doc, a.namespace, a.name, a.version_key
        FROM apps a WHERE {" AND ".join(where)}
        ORDER BY a.namespace, a.name, a.version_key LIMIT {arg(limit + 1)}"""
    return sql, args


class ListingSql(OnConnection):
    async def app_document(self, app_id: int) -> str:
        """The stored document with `public` added, as JSON text."""
        doc: bytes = await self.conn.fetchval(f"SELECT {_DOC} FROM apps a WHERE a.id = $1", app_id)
        return doc.decode()

    async def list_apps(
        self, viewer: Viewer, flt: AppFilter, after: list[str] | None, limit: int
    ) -> Page:
        """Up to `limit` documents the viewer may read after `after`, in keyset order."""
        sql, args = listing_sql(viewer, flt, after, limit)
        rows = await self.conn.fetch(sql, *args)
        last = rows[limit - 1] if len(rows) > limit else None
        more_after = [last["namespace"], last["name"], last["version_key"]] if last else None
        return Page(data=b",".join([row[0] for row in rows[:limit]]), more_after=more_after)
