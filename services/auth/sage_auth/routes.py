"""The auth service's route table, in one place."""

from aiohttp import web

from . import handlers as h
from . import handlers_login as login
from . import handlers_registry as reg
from . import handlers_sage as sage

routes: list[web.RouteDef] = [
    web.get("/auth/whoami", h.whoami),
    web.post("/auth/tokens", h.create_token),
    web.get("/auth/tokens", h.list_tokens),
    web.delete("/auth/tokens/{token_id}", h.revoke_token),
    web.post("/auth/token_info", h.token_info),
    web.post("/auth/token_info/", h.token_info),  # SAGE's path (JSON form)
    web.get("/auth/users", h.list_users),
    web.post("/auth/users", h.create_user),
    web.get("/auth/users/~self", sage.get_self),
    web.get("/auth/users/{username}", h.get_user),
    web.patch("/auth/users/{username}", h.update_user),
    web.delete("/auth/users/{username}", h.delete_user),
    web.get("/auth/groups", h.list_groups),
    web.post("/auth/groups", h.create_group),
    web.get("/auth/groups/{name}", h.get_group),
    web.delete("/auth/groups/{name}", h.delete_group),
    web.put("/auth/groups/{name}/members/{username}", h.add_member),
    web.delete("/auth/groups/{name}/members/{username}", h.remove_member),
    web.get("/auth/registry/token", reg.registry_token),
    web.get("/auth/jwks.json", reg.jwks),
    web.get("/auth/login", login.login),
    web.get("/auth/callback", login.callback),
    web.post("/auth/session/tokens", login.session_token),
    web.post("/auth/logout", login.logout),
    web.get("/auth", login.portal_login),  # the SAGE portal's sign-in link: ?callback=URL
    web.get("/auth/", login.portal_login),
    web.get("/auth/portal-logout", login.portal_logout),
    web.get("/auth/portal-logout/", login.portal_logout),
]
