"""HTTP in and out for registry tokens (Docker registry v2 token protocol) and the public key."""

from __future__ import annotations

from aiohttp import web

from sage_common.auth import Principal, principal
from sage_common.errors import BadRequest, Unauthorized
from sage_common.openapi import describe
from sage_common.web import json_response

from . import service_registry
from .handlers import basic_credentials
from .state import AUTH_CONFIG, POLICY, SIGNER, STORE


def _caller(request: web.Request) -> tuple[Principal | None, str | None]:
    """The caller, and the user it acts for: a service account logging in with Basic gives its own
    client_id as user, and the builder may add `+username` to ask a pull token on their behalf."""
    who = principal(request)
    credentials = basic_credentials(request)
    if who is None or not who.is_service or credentials is None or credentials[0] == who.client_id:
        return who, None
    client, plus, behalf = credentials[0].partition("+")
    if not (plus and behalf and client == who.client_id) or (
        client not in service_registry.ON_BEHALF_CLIENTS
    ):
        raise Unauthorized("wrong client id for these credentials")
    return who, behalf


@describe(tags=["registry"])
async def registry_token(request: web.Request) -> web.Response:
    """Docker registry token: ?service=&scope=repository:ns/name:pull,push (repeatable)."""
    who, behalf = _caller(request)
    config = request.app[AUTH_CONFIG]
    service = request.query.get("service") or config.registry_service
    if service != config.registry_service:
        raise BadRequest(f"this auth service issues tokens for {config.registry_service} only")
    wanted = service_registry.parse_scopes(request.query.getall("scope", []))
    if behalf is not None:
        who, wanted = await service_registry.on_behalf(request.app[STORE], behalf, wanted)
    body = await service_registry.issue_token(
        request.app[SIGNER],
        request.app[POLICY],
        who,
        wanted,
        service=service,
        issuer=config.registry_issuer,
        lifetime=config.registry_token_seconds,
    )
    return json_response(body, headers={"Cache-Control": "no-store"})


@describe(tags=["registry"])
async def jwks(request: web.Request) -> web.Response:
    """The public key that signs registry tokens, as a JWK Set."""
    return json_response(request.app[SIGNER].jwks(), headers={"Cache-Control": "max-age=300"})
