"""HTTP in and out for institutional login: redirect out, come back, session, token, logout."""

from __future__ import annotations

import html
import re

from aiohttp import web

from sage_common.errors import BadRequest, NotFound, Unauthorized
from sage_common.openapi import describe
from sage_common.web import json_response, read_json

from . import service
from .login import Login
from .models import CreateToken, NewToken
from .oidc import LoginFailed
from .state import AUTH_CONFIG, LOGIN, STORE

COOKIE = "sage_session"
_ERROR_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>SAGE login</title></head>
<body>
<p>Logged in as <b>{username}</b>{pending}.</p>
<p><button id="mint">Create a token for the command line</button></p>
<pre id="out"></pre>
<script>
document.getElementById("mint").onclick = async () => {{
  const r = await fetch("token_url", {{method: "POST",
    headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{name: "browser " + new Date().toISOString()}})}});
  const b = await r.json();
  document.getElementById("out").textContent = r.ok
    ? "export SAGE_USER_TOKEN=" + b.token + "\\n(shown once: keep it safe)" : b.detail;
}};
</script>
</body></html>
""".replace("token_url", "session/tokens")


def _login(request: web.Request) -> Login:
    login = request.app.get(LOGIN)
    if login is None:
        raise NotFound("institutional login is not configured here (SAGE_AUTH_OIDC_ISSUER)")
    return login


@describe(tags=["login"])
async def login(request: web.Request) -> web.Response:
    """Start an institutional login: redirect to the identity provider (?next=/path to return)."""
    url = await _login(request).begin(request.query.get("next"))
    raise web.HTTPSeeOther(url)


@describe(tags=["login"])
async def callback(request: web.Request) -> web.Response:
    """Where the identity provider sends the browser back: make the session cookie."""
    flow = _login(request)
    error = request.query.get("error")
    if error is not None:
        shown = error if _ERROR_RE.match(error) else "error"
        raise LoginFailed(f"the identity provider refused the login: {shown}")
    state, code = request.query.get("state"), request.query.get("code")
    if not state or not code or len(state) > 256 or len(code) > 2048:
        raise BadRequest("the callback needs state and code")
    user, session, next_path = await flow.finish(state, code)
    if next_path:
        response = web.Response(status=303, headers={"Location": next_path})
    elif "application/json" in request.headers.get("Accept", ""):
        response = json_response({"username": user.username, "is_approved": user.is_approved})
    else:
        pending = "" if user.is_approved else " (waiting for an administrator's approval)"
        body = PAGE.format(username=html.escape(user.username), pending=pending)
        response = web.Response(text=body, content_type="text/html")
    config = request.app[AUTH_CONFIG]
    response.set_cookie(
        COOKIE,
        session,
        max_age=config.session_hours * 3600,
        path="/auth",
        httponly=True,
        samesite="Lax",
        secure=config.secure_cookies,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@describe(request=CreateToken, response=NewToken, status=201, tags=["login"])
async def session_token(request: web.Request) -> web.Response:
    """Mint a token with the browser session (JSON only, so other sites cannot forge it)."""
    who = await _login(request).session_principal(request.cookies.get(COOKIE))
    if who is None:
        raise Unauthorized("no session: log in at /auth/login first")
    body = await read_json(request, CreateToken)
    config = request.app[AUTH_CONFIG]
    new = await service.create_token(
        request.app[STORE],
        who,
        body,
        default_days=config.token_default_days,
        max_days=config.token_max_days,
    )
    return json_response(new, status=201, headers={"Cache-Control": "no-store"})


@describe(status=204, tags=["login"])
async def logout(request: web.Request) -> web.Response:
    """End the browser session (tokens made with it keep working until revoked)."""
    await _login(request).logout(request.cookies.get(COOKIE))
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/auth")
    return response
