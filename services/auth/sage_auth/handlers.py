"""HTTP in and out for users, groups, tokens and introspection; the rules are in service.py."""

from __future__ import annotations

import base64
import binascii
import hmac
from uuid import UUID

from aiohttp import web

from sage_common.auth import Principal, require_principal
from sage_common.config import is_known_default
from sage_common.errors import BadRequest, NotFound, Unauthorized, UnsupportedMediaType
from sage_common.openapi import describe
from sage_common.web import json_response, read_json

from . import handlers_sage, service
from .handlers_sage import sage_user
from .models import (
    CreateGroup,
    CreateToken,
    CreateUser,
    Group,
    NewToken,
    SageUser,
    UpdateUser,
    User,
    Whoami,
)
from .state import AUTH_CONFIG, LOCAL, STORE

FORM = "application/x-www-form-urlencoded"


@describe(response=Whoami, tags=["tokens"])
async def whoami(request: web.Request) -> web.Response:
    """Who the caller is: user, flags, groups and the token's scopes."""
    who = require_principal(request)
    return json_response(await service.whoami(request.app[STORE], who))


@describe(request=CreateToken, response=NewToken, status=201, tags=["tokens"])
async def create_token(request: web.Request) -> web.Response:
    """Make a token for the caller; the answer is the only time the token is shown."""
    return await mint_token(request, require_principal(request))


async def mint_token(request: web.Request, who: Principal) -> web.Response:
    """A token for `who` as the `CreateToken` body asks (the token route and the login session's)."""
    body = await read_json(request, CreateToken)
    new = await service.create_token(request.app[STORE], who, body, request.app[AUTH_CONFIG])
    return json_response(new, status=201, headers={"Cache-Control": "no-store"})


@describe(tags=["tokens"])
async def list_tokens(request: web.Request) -> web.Response:
    """The caller's tokens (an admin may pass ?username=), never the tokens themselves."""
    who = require_principal(request)
    tokens = await service.list_tokens(request.app[STORE], who, request.query.get("username"))
    return json_response(tokens)


@describe(status=204, tags=["tokens"])
async def revoke_token(request: web.Request) -> web.Response:
    """Revoke the caller's token (an admin: anyone's); it stops working within the cache TTL."""
    who = require_principal(request)
    try:
        token_id = UUID(request.match_info["token_id"])
    except ValueError:
        raise NotFound("no such token") from None
    hashed = await service.revoke_token(request.app[STORE], who, token_id)
    if hashed is not None:
        request.app[LOCAL].forget(hashed)
    return web.Response(status=204)


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    """The user and password of the request's HTTP Basic credentials; None without them."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _service_client(request: web.Request) -> str:
    """The calling service's client_id, checked against its secret (HTTP Basic); 401 otherwise."""
    unauthorized = Unauthorized(
        "token_info needs service credentials (HTTP Basic client_id:secret)",
        headers={"WWW-Authenticate": 'Basic realm="sage-auth"'},
    )
    credentials = basic_credentials(request)
    if credentials is None:
        raise unauthorized
    client_id, secret = credentials
    expected = request.app[AUTH_CONFIG].service_clients.get(client_id)
    if expected is None or is_known_default(expected.get_secret_value()):
        raise unauthorized
    if not hmac.compare_digest(secret.encode(), expected.get_secret_value().encode()):
        raise unauthorized
    return client_id


@describe(tags=["introspection"])
async def token_info(request: web.Request) -> web.Response:
    """Token introspection for the other services, in two dialects chosen by the body's type:
    RFC 7662 (form `token=`, HTTP Basic client_id:secret) and SAGE's (JSON `{"token"}`,
    `Authorization: Sage <service secret>`, 404 for a token that is not live)."""
    if request.content_type == "application/json":
        return await handlers_sage.sage_token_info(request)
    _service_client(request)
    if request.content_type != FORM:
        raise UnsupportedMediaType(f"send the token as {FORM} (RFC 7662) or application/json")
    try:
        form = await request.post()
    except (ValueError, LookupError):  # bytes not in the charset, or a charset Python lacks
        raise BadRequest("the form is not valid text in its charset (send UTF-8)") from None
    token = form.get("token")
    if not isinstance(token, str) or not token:
        raise BadRequest("send the token as the form field token")
    who = await request.app[LOCAL].lookup(token)
    headers = {"Cache-Control": "no-store"}
    if who is None:
        return json_response({"active": False}, headers=headers)
    return json_response(
        {
            "active": True,
            "username": who.username,
            "sub": who.username,
            "scope": " ".join(who.scopes),
            "exp": who.exp,
            "client_id": who.client_id,
            "groups": who.groups,
            "is_admin": who.is_admin,
            "is_approved": who.is_approved,
            "token_type": "service" if who.is_service else "sage",
        },
        headers=headers,
    )


# ------------------------------------------------------------------------ administration ----
@describe(response=SageUser, tags=["users"])
async def list_users(request: web.Request) -> web.Response:
    """Every user, in SAGE's form too (admins only)."""
    users = await service.list_users(request.app[STORE], require_principal(request))
    return json_response([sage_user(request, user) for user in users])


@describe(request=CreateUser, response=User, status=201, tags=["users"])
async def create_user(request: web.Request) -> web.Response:
    """Add a user (admins only); institutional login adds users by itself."""
    who = require_principal(request)
    service.require_admin(who)  # before the body, so strangers learn nothing from 422s
    body = await read_json(request, CreateUser)
    return json_response(await service.create_user(request.app[STORE], who, body), status=201)


@describe(response=SageUser, tags=["users"])
async def get_user(request: web.Request) -> web.Response:
    """One user with their groups, in SAGE's form too: oneself, or anyone for admins and
    service accounts; `~self` is the caller."""
    who = require_principal(request)
    user = await service.get_user(request.app[STORE], who, request.match_info["username"])
    return json_response(sage_user(request, user))


@describe(request=UpdateUser, response=User, tags=["users"])
async def update_user(request: web.Request) -> web.Response:
    """Change a user's name, email, admin or approved flag (admins only)."""
    who = require_principal(request)
    service.require_admin(who)
    body = await read_json(request, UpdateUser)
    user = await service.update_user(request.app[STORE], who, request.match_info["username"], body)
    request.app[LOCAL].forget_user(user.username)
    return json_response(user)


@describe(status=204, tags=["users"])
async def delete_user(request: web.Request) -> web.Response:
    """Delete a user with their tokens, sessions and memberships (admins only)."""
    who = require_principal(request)
    await service.delete_user(request.app[STORE], who, request.match_info["username"])
    request.app[LOCAL].forget_user(request.match_info["username"])
    return web.Response(status=204)


@describe(response=Group, tags=["groups"])
async def list_groups(request: web.Request) -> web.Response:
    """Every group with its members (admins only)."""
    return json_response(await service.list_groups(request.app[STORE], require_principal(request)))


@describe(request=CreateGroup, response=Group, status=201, tags=["groups"])
async def create_group(request: web.Request) -> web.Response:
    """Add a group (admins only)."""
    who = require_principal(request)
    service.require_admin(who)
    body = await read_json(request, CreateGroup)
    return json_response(await service.create_group(request.app[STORE], who, body), status=201)


@describe(response=Group, tags=["groups"])
async def get_group(request: web.Request) -> web.Response:
    """One group with its members (admins only)."""
    who = require_principal(request)
    group = await service.get_group(request.app[STORE], who, request.match_info["name"])
    return json_response(group)


@describe(status=204, tags=["groups"])
async def delete_group(request: web.Request) -> web.Response:
    """Delete a group and its memberships (admins only)."""
    who = require_principal(request)
    await service.delete_group(request.app[STORE], who, request.match_info["name"])
    return web.Response(status=204)


@describe(status=204, tags=["groups"])
async def add_member(request: web.Request) -> web.Response:
    """Put a user in a group (admins only; doing it twice is harmless)."""
    who = require_principal(request)
    m = request.match_info
    await service.add_member(request.app[STORE], who, m["name"], m["username"])
    request.app[LOCAL].forget_user(m["username"])
    return web.Response(status=204)


@describe(status=204, tags=["groups"])
async def remove_member(request: web.Request) -> web.Response:
    """Take a user out of a group (admins only)."""
    who = require_principal(request)
    m = request.match_info
    await service.remove_member(request.app[STORE], who, m["name"], m["username"])
    request.app[LOCAL].forget_user(m["username"])
    return web.Response(status=204)
