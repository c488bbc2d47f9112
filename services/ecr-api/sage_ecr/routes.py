"""The ECR API's route table, in one place: SAGE's routes under `/api`, and the additions.

Every route also answers with a trailing slash (`/api/apps/`, `/api/submit/`), as SAGE's ECR does.
"""

from aiohttp import web

from sage_common.scopes import NO_SCOPE, ScopeTable
from sage_common.web import with_trailing_slashes

from . import handlers as h

READ = "ecr:read"  # see what the caller may read
USE = "ecr"  # also submit, build, review, manage namespaces, repositories and permissions
ADMIN = "ecr:admin"  # also an administrator's powers, for users who are administrators

APP = "/api/apps/{namespace}/{name}/{version}"
BUILD = "/api/builds/{namespace}/{name}/{version}"

# Each route with the scope a token needs on it (sage_common.scopes): a route cannot go without one.
_TABLE: list[tuple[web.RouteDef, str | None]] = [
    (web.get("/api/healthy", h.healthy), NO_SCOPE),
    (web.get("/api/schema/app.json", h.app_schema), NO_SCOPE),
    (web.post("/api/submit", h.submit), USE),
    (web.get("/api/apps", h.list_apps), READ),
    (web.get("/api/apps/{namespace}", h.list_apps), READ),
    (web.get("/api/apps/{namespace}/{name}", h.list_apps), READ),
    (web.get(APP, h.get_app), READ),
    (web.post(APP, h.submit), USE),
    (web.put(APP, h.set_frozen), USE),  # ?frozen=...
    (web.delete(APP, h.delete_app), USE),
    (web.get(APP + "/status", h.app_status), READ),
    (web.get(APP + "/logs", h.app_logs), READ),
    (web.get(APP + "/profile", h.app_profile), READ),
    (web.post(APP + "/review", h.review), USE),
    (web.get(BUILD, h.get_build), READ),
    (web.post(BUILD, h.rebuild), USE),
    (web.get(BUILD + "/{build_number}/console", h.build_console), READ),
    (web.get("/api/namespaces", h.list_namespaces), READ),
    (web.put("/api/namespaces", h.create_namespace), USE),
    (web.get("/api/namespaces/{namespace}", h.get_namespace), READ),
    (web.delete("/api/namespaces/{namespace}", h.delete_namespace), USE),
    (web.get("/api/repositories", h.list_repositories), READ),
    (web.get("/api/repositories/{namespace}", h.list_repositories), READ),
    (web.get("/api/repositories/{namespace}/{name}", h.get_repository), READ),
    (web.delete("/api/repositories/{namespace}/{name}", h.delete_repository), USE),
    (web.get("/api/permissions/{namespace}", h.get_permissions), READ),
    (web.put("/api/permissions/{namespace}", h.change_permissions), USE),
    (web.get("/api/permissions/{namespace}/{name}", h.get_permissions), READ),
    (web.put("/api/permissions/{namespace}/{name}", h.change_permissions), USE),
    # the auth service's account; the handler checks
    (web.get("/api/registry/access", h.registry_access), ADMIN),
    (web.get("/api/meta-files/{namespace}/{name}/{version}/{file}", h.meta_file), READ),
]

routes: list[web.RouteDef] = with_trailing_slashes([route for route, _ in _TABLE]) + [
    web.get("/api/", h.sage_root)
]
SCOPES: ScopeTable = {
    ("GET", "/api"): NO_SCOPE,  # SAGE's root: what this is
    **{(route.method, route.path): scope for route, scope in _TABLE},
}
