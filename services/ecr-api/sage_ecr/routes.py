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

routes: list[web.RouteDef] = with_trailing_slashes(
    [
        web.get("/api/healthy", h.healthy),
        web.get("/api/schema/app.json", h.app_schema),
        web.post("/api/submit", h.submit),
        web.get("/api/apps", h.list_apps),
        web.get("/api/apps/{namespace}", h.list_apps),
        web.get("/api/apps/{namespace}/{name}", h.list_apps),
        web.get(APP, h.get_app),
        web.post(APP, h.submit),
        web.put(APP, h.set_frozen),
        web.delete(APP, h.delete_app),
        web.get(APP + "/status", h.app_status),
        web.get(APP + "/logs", h.app_logs),
        web.get(APP + "/profile", h.app_profile),
        web.post(APP + "/review", h.review),
        web.get(BUILD, h.get_build),
        web.post(BUILD, h.rebuild),
        web.get(BUILD + "/{build_number}/console", h.build_console),
        web.get("/api/namespaces", h.list_namespaces),
        web.put("/api/namespaces", h.create_namespace),
        web.get("/api/namespaces/{namespace}", h.get_namespace),
        web.delete("/api/namespaces/{namespace}", h.delete_namespace),
        web.get("/api/repositories", h.list_repositories),
        web.get("/api/repositories/{namespace}", h.list_repositories),
        web.get("/api/repositories/{namespace}/{name}", h.get_repository),
        web.delete("/api/repositories/{namespace}/{name}", h.delete_repository),
        web.get("/api/permissions/{namespace}", h.get_permissions),
        web.put("/api/permissions/{namespace}", h.change_permissions),
        web.get("/api/permissions/{namespace}/{name}", h.get_permissions),
        web.put("/api/permissions/{namespace}/{name}", h.change_permissions),
        web.get("/api/registry/access", h.registry_access),
        web.get("/api/meta-files/{namespace}/{name}/{version}/{file}", h.meta_file),
    ]
) + [web.get("/api/", h.sage_root)]

# The scope a token needs on each route (sage_common.scopes); a route not here refuses every token.
SCOPES: ScopeTable = {
    ("GET", "/api"): NO_SCOPE,  # SAGE's root: what this is
    ("GET", "/api/healthy"): NO_SCOPE,
    ("GET", "/api/schema/app.json"): NO_SCOPE,
    ("POST", "/api/submit"): USE,
    ("GET", "/api/apps"): READ,
    ("GET", "/api/apps/{namespace}"): READ,
    ("GET", "/api/apps/{namespace}/{name}"): READ,
    ("GET", APP): READ,
    ("POST", APP): USE,
    ("PUT", APP): USE,  # ?frozen=...
    ("DELETE", APP): USE,
    ("GET", APP + "/status"): READ,
    ("GET", APP + "/logs"): READ,
    ("GET", APP + "/profile"): READ,
    ("POST", APP + "/review"): USE,
    ("GET", BUILD): READ,
    ("POST", BUILD): USE,
    ("GET", BUILD + "/{build_number}/console"): READ,
    ("GET", "/api/namespaces"): READ,
    ("PUT", "/api/namespaces"): USE,
    ("GET", "/api/namespaces/{namespace}"): READ,
    ("DELETE", "/api/namespaces/{namespace}"): USE,
    ("GET", "/api/repositories"): READ,
    ("GET", "/api/repositories/{namespace}"): READ,
    ("GET", "/api/repositories/{namespace}/{name}"): READ,
    ("DELETE", "/api/repositories/{namespace}/{name}"): USE,
    ("GET", "/api/permissions/{namespace}"): READ,
    ("PUT", "/api/permissions/{namespace}"): USE,
    ("GET", "/api/permissions/{namespace}/{name}"): READ,
    ("PUT", "/api/permissions/{namespace}/{name}"): USE,
    ("GET", "/api/meta-files/{namespace}/{name}/{version}/{file}"): READ,
    ("GET", "/api/registry/access"): ADMIN,  # the auth service's account; the handler checks
}
