"""HTTP in and out of SAGE's own auth dialect, beside ours: `users/~self` and the JSON form of
`token_info/`, as the edge scheduler, sage-ecr and the portal call waggle-auth-app."""

from __future__ import annotations

from aiohttp import web

from sage_common.auth import principal, require_principal
from sage_common.errors import BadRequest, NotFound
from sage_common.openapi import describe
from sage_common.web import json_response, read_json

from . import service
from .models import SageTokenInfoOut, SageUser, User
from .state import AUTH_CONFIG, LOCAL, STORE


async def sage_token_info(request: web.Request) -> web.Response:
    """SAGE's introspection form, as waggle-auth-app answers it and sage-ecr reads it."""
    service.require_service(principal(request))
    body = await read_json(request)
    token = body.get("token") if isinstance(body, dict) else None
    if token is None:
        raise BadRequest("missing token data")
    if not isinstance(token, str) or not token:
        raise BadRequest("invalid token data")
    who = await request.app[LOCAL].lookup(token)
    if who is None or who.is_service:
        raise NotFound("no such token")
    answer = SageTokenInfoOut(
        username=who.username, scope=" ".join(who.scopes), exp=who.exp or 0, groups=who.groups
    )
    return json_response(answer, headers={"Cache-Control": "no-store"})


@describe(response=SageUser, tags=["users"])
async def get_self(request: web.Request) -> web.Response:
    """The caller as SAGE's `GET /users/~self` shows a user (the edge scheduler's login check)."""
    user = await service.get_self(request.app[STORE], require_principal(request))
    return json_response(sage_user(request, user))


def sage_user(request: web.Request, user: User) -> SageUser:
    """The user document SAGE's clients read, its `url` on this system's public address."""
    base = request.app[AUTH_CONFIG].public_url.rstrip("/")
    return SageUser.of(user, f"{base}/auth/users/{user.username}")
