"""The ECR API's route table, in one place: SAGE's routes under `/api`, and the additions.

Every route also answers with a trailing slash (`/api/apps/`, `/api/submit/`), as SAGE's ECR does.
"""

from aiohttp import web

from sage_common.web import with_trailing_slashes

from . import handlers as h

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
