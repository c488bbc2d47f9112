"""The auth service's route table, in one place."""

from aiohttp import web

from sage_common.scopes import NO_SCOPE, ScopeTable

from . import handlers as h
from . import handlers_login as login
from . import handlers_registry as reg
from . import handlers_sage as sage
from .service import ADMIN_SCOPE

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

# The scope a token needs on each route (sage_common.scopes); a route not here refuses every token.
# A token of any scope sees its user and manages that user's tokens (never wider than its own);
# the registry token route weighs the `registry` scope itself (service_registry.py).
SCOPES: ScopeTable = {
    ("GET", "/auth/whoami"): NO_SCOPE,
    ("POST", "/auth/tokens"): NO_SCOPE,
    ("GET", "/auth/tokens"): NO_SCOPE,
    ("DELETE", "/auth/tokens/{token_id}"): NO_SCOPE,
    ("POST", "/auth/token_info"): NO_SCOPE,  # service accounts only; the handler checks
    ("GET", "/auth/users"): ADMIN_SCOPE,
    ("POST", "/auth/users"): ADMIN_SCOPE,
    ("GET", "/auth/users/~self"): NO_SCOPE,  # SAGE's whoami (the edge scheduler asks it)
    ("GET", "/auth/users/{username}"): NO_SCOPE,  # oneself; others need auth:admin (service.py)
    ("PATCH", "/auth/users/{username}"): ADMIN_SCOPE,
    ("DELETE", "/auth/users/{username}"): ADMIN_SCOPE,
    ("GET", "/auth/groups"): ADMIN_SCOPE,
    ("POST", "/auth/groups"): ADMIN_SCOPE,
    ("GET", "/auth/groups/{name}"): ADMIN_SCOPE,
    ("DELETE", "/auth/groups/{name}"): ADMIN_SCOPE,
    ("PUT", "/auth/groups/{name}/members/{username}"): ADMIN_SCOPE,
    ("DELETE", "/auth/groups/{name}/members/{username}"): ADMIN_SCOPE,
    ("GET", "/auth/registry/token"): NO_SCOPE,
    ("GET", "/auth/jwks.json"): NO_SCOPE,
    ("GET", "/auth/login"): NO_SCOPE,
    ("GET", "/auth/callback"): NO_SCOPE,
    ("POST", "/auth/session/tokens"): NO_SCOPE,
    ("POST", "/auth/logout"): NO_SCOPE,
    ("GET", "/auth"): NO_SCOPE,  # the portal's sign-in link
    ("GET", "/auth/portal-logout"): NO_SCOPE,
}
