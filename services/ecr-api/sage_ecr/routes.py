"""The ECR API's route table, in one place: SAGE's routes under `/api`, and the additions."""

from aiohttp import web

from sage_common.scopes import NO_SCOPE, ScopeTable

from . import handlers as h

READ = "ecr:read"  # see what the caller may read
USE = "ecr"  # also submit, build, review, manage namespaces, repositories and permissions
ADMIN = "ecr:admin"  # also an administrator's powers, for users who are administrators

APP = "/api/apps/{namespace}/{name}/{version}"

routes: list[web.RouteDef] = [
    web.get("/api/schema/app.json", h.app_schema),
    web.post("/api/submit", h.submit),
    web.get("/api/apps", h.list_apps),
    web.get("/api/apps/{namespace}", h.list_apps),
    web.get("/api/apps/{namespace}/{name}", h.list_apps),
    web.get(APP, h.get_app),
    web.post(APP, h.submit),
    web.delete(APP, h.delete_app),
    web.get(APP + "/status", h.app_status),
    web.get(APP + "/logs", h.app_logs),
    web.get(APP + "/profile", h.app_profile),
    web.post(APP + "/review", h.review),
    web.get("/api/builds/{namespace}/{name}/{version}", h.get_build),
    web.post("/api/builds/{namespace}/{name}/{version}", h.rebuild),
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
]

# The scope a token needs on each route (sage_common.scopes); a route not here refuses every token.
SCOPES: ScopeTable = {
    ("GET", "/api/schema/app.json"): NO_SCOPE,
    ("POST", "/api/submit"): USE,
    ("GET", "/api/apps"): READ,
    ("GET", "/api/apps/{namespace}"): READ,
    ("GET", "/api/apps/{namespace}/{name}"): READ,
    ("GET", APP): READ,
    ("POST", APP): USE,
    ("DELETE", APP): USE,
    ("GET", APP + "/status"): READ,
    ("GET", APP + "/logs"): READ,
    ("GET", APP + "/profile"): READ,
    ("POST", APP + "/review"): USE,
    ("GET", "/api/builds/{namespace}/{name}/{version}"): READ,
    ("POST", "/api/builds/{namespace}/{name}/{version}"): USE,
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
    ("GET", "/api/registry/access"): ADMIN,  # the auth service's account; the handler checks
}
