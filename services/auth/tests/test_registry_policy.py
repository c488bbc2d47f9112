"""Registry scopes as Docker clients send them, and who gets which actions under the local policy."""

from __future__ import annotations

import pytest

from sage_auth.service_registry import Access, AdminAndBuilderPolicy, parse_scopes
from sage_common.auth import Principal
from sage_common.errors import BadRequest


def test_scopes_parse_with_hosts_plugins_and_several_per_parameter():
    assert parse_scopes(
        [
            "repository:ns/app:pull,push",
            "repository:localhost:5000/ns/a:pull registry:catalog:*",
            "repository(plugin):ns/p:pull,pull",
        ]
    ) == [
        Access("repository", "ns/app", ("pull", "push")),
        Access("repository", "localhost:5000/ns/a", ("pull",)),
        Access("registry", "catalog", ("*",)),
        Access("repository(plugin)", "ns/p", ("pull",)),
    ]
    assert parse_scopes([]) == []


@pytest.mark.parametrize(
    "scope",
    [
        "repository",
        "repository:ns/app",
        "repository:ns/app:",
        "Repository:a:pull",
        "repository:a:pull;rm",
        "repository::pull",
    ],
)
def test_malformed_scopes_are_bad_requests(scope):
    with pytest.raises(BadRequest):
        parse_scopes([scope])


def test_too_many_scopes_are_refused():
    with pytest.raises(BadRequest):
        parse_scopes([" ".join(f"repository:a/b{i}:pull" for i in range(33))])


WANTED = [
    Access("repository", "ns/a", ("pull", "push", "delete")),
    Access("registry", "catalog", ("*",)),
]
ADMIN = Principal(username="root", is_admin=True, scopes=["all"])
ADMIN_WITHOUT_REGISTRY_SCOPE = Principal(username="root", is_admin=True, scopes=["storage:read"])
USER = Principal(username="alice", is_approved=True, scopes=["all"])
BUILDER = Principal(username="service:builder", client_id="builder", scopes=["all"])
PROFILER = Principal(username="service:profiler", client_id="profiler", scopes=["all"])
OTHER_SERVICE = Principal(username="service:storage", client_id="storage", scopes=["all"])


@pytest.mark.parametrize(
    ("who", "granted"),
    [
        (ADMIN, WANTED),
        (ADMIN_WITHOUT_REGISTRY_SCOPE, []),
        (USER, []),
        (None, []),
        (BUILDER, [Access("repository", "ns/a", ("pull", "push", "delete"))]),
        (PROFILER, [Access("repository", "ns/a", ("pull",))]),
        (OTHER_SERVICE, []),
    ],
    ids=["admin", "admin-narrow-token", "user", "anonymous", "builder", "profiler", "other"],
)
async def test_admins_and_builder_only_and_the_profiler_pulls(who, granted):
    assert await AdminAndBuilderPolicy().grant(who, WANTED) == granted
