"""HTTP in and out for institutional login: redirect out, come back, session, token, logout."""

from __future__ import annotations

import html
import re
import secrets
from urllib.parse import urlsplit

from aiohttp import web

from sage_common.errors import BadRequest, NotFound, Unauthorized
from sage_common.openapi import describe
from sage_common.web import json_response

from .handlers import mint_token
from .models import CreateToken, NewToken
from .oidc import LoginFailed
from .service_login import Login, return_allowed
from .state import AUTH_CONFIG, LOCAL, LOGIN

COOKIE = "sage_session"
LOGIN_COOKIE = "sage_login"  # binds a login in progress to the browser that started it
TOKEN_COOKIE, USER_COOKIE = "sage_token", "sage_username"  # what the SAGE portal reads
_ERROR_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_BINDING_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>SAGE login</title></head>
<body>
<p>Logged in as <b>{username}</b>{pending}.</p>
<p><button id="mint">Create a token for the command line</button></p>
<pre id="out"></pre>
<script>
document.getElementById("mint").onclick = async () => {{
  const r = await fetch("session/tokens", {{method: "POST",
    headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{name: "browser " + new Date().toISOString()}})}});
  const b = await r.json();
  document.getElementById("out").textContent = r.ok
    ? "export SAGE_USER_TOKEN=" + b.token + "\\n(shown once: keep it safe)" : b.detail;
}};
</script>
</body></html>
"""


def _login(request: web.Request) -> Login:
    login = request.app.get(LOGIN)
    if login is None:
        raise NotFound("institutional login is not configured here (SAGE_AUTH_OIDC_ISSUER)")
    return login


def _own_cookie(
    request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int
) -> None:
    """A cookie for the auth service's own paths, out of reach of scripts."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/auth",
        httponly=True,
        samesite="Lax",
        secure=request.app[AUTH_CONFIG].secure_cookies,
    )


def _browser_binding(request: web.Request) -> str:
    """The value that binds a login to this browser: its login cookie's, or a new one."""
    value = request.cookies.get(LOGIN_COOKIE, "")
    return value if _BINDING_RE.match(value) else secrets.token_urlsafe(32)


@describe(tags=["login"])
async def login(request: web.Request) -> web.Response:
    """Start an institutional login: redirect to the identity provider (?next=/path, or the
    portal's ?callback=URL, to return there)."""
    flow = _login(request)
    browser = _browser_binding(request)
    target = request.query.get("next") or request.query.get("callback")
    url = await flow.begin(target, browser)
    response = web.Response(status=303, headers={"Location": url, "Cache-Control": "no-store"})
    _own_cookie(
        request, response, LOGIN_COOKIE, browser, request.app[AUTH_CONFIG].login_state_seconds
    )
    return response


@describe(tags=["login"])
async def callback(request: web.Request) -> web.Response:
    """Where the identity provider sends the browser back: the session cookie, and the portal's
    `sage_token` and `sage_username` cookies."""
    flow = _login(request)
    error = request.query.get("error")
    if error is not None:
        shown = error if _ERROR_RE.match(error) else "error"
        raise LoginFailed(f"the identity provider refused the login: {shown}")
    state, code = request.query.get("state"), request.query.get("code")
    if not state or not code or len(state) > 256 or len(code) > 2048:
        raise BadRequest("the callback needs state and code")
    done = await flow.finish(state, code, request.cookies.get(LOGIN_COOKIE))
    user = done.user
    if done.next_path:
        response = web.Response(status=303, headers={"Location": done.next_path})
    elif "application/json" in request.headers.get("Accept", ""):
        response = json_response({"username": user.username, "is_approved": user.is_approved})
    else:
        pending = "" if user.is_approved else " (waiting for an administrator's approval)"
        body = PAGE.format(username=html.escape(user.username), pending=pending)
        response = web.Response(text=body, content_type="text/html")
    config = request.app[AUTH_CONFIG]
    max_age = config.session_hours * 3600
    _own_cookie(request, response, COOKIE, done.session, max_age)
    # The portal reads these two with document.cookie: not HttpOnly, on the shared domain.
    for name, value in ((TOKEN_COOKIE, done.portal_token.token), (USER_COOKIE, user.username)):
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            domain=config.cookie_domain or None,
            samesite="Strict",
            secure=config.secure_cookies,
        )
    response.del_cookie(LOGIN_COOKIE, path="/auth")
    response.headers["Cache-Control"] = "no-store"
    return response


@describe(request=CreateToken, response=NewToken, status=201, tags=["login"])
async def session_token(request: web.Request) -> web.Response:
    """Mint a token with the browser session (JSON only, so other sites cannot forge it)."""
    who = await _login(request).session_principal(request.cookies.get(COOKIE))
    if who is None:
        raise Unauthorized("no session: log in at /auth/login first")
    return await mint_token(request, who)


async def _logged_out(request: web.Request, response: web.Response) -> web.Response:
    """End the browser's session (revoking its portal token) and clear its cookies."""
    login = request.app.get(LOGIN)
    if login is not None:
        revoked = await login.logout(request.cookies.get(COOKIE))
        if revoked is not None:
            request.app[LOCAL].forget(revoked)
    domain = request.app[AUTH_CONFIG].cookie_domain or None
    response.del_cookie(COOKIE, path="/auth")
    for name in (TOKEN_COOKIE, USER_COOKIE):
        response.del_cookie(name, path="/", domain=domain)
    response.headers["Cache-Control"] = "no-store"
    return response


@describe(status=204, tags=["login"])
async def logout(request: web.Request) -> web.Response:
    """End the browser session: its cookies go, and so does the portal's token (tokens made
    with the session for the command line keep working until they expire or are revoked)."""
    return await _logged_out(request, web.Response(status=204))


@describe(tags=["login"])
async def portal_logout(request: web.Request) -> web.Response:
    """SAGE's `portal-logout/?callback=URL`, as the portal's sign-out calls it: log out, then
    back to the portal (a URL of this site or the cookie domain; else a plain answer)."""
    target = request.query.get("callback", "")
    config = request.app[AUTH_CONFIG]
    hosts = frozenset({urlsplit(config.public_url).hostname or ""} - {""})
    if target and return_allowed(target, hosts, config.cookie_domain):
        response = web.Response(status=303, headers={"Location": target})
    else:
        response = web.Response(text="Logged out.\n", content_type="text/plain")
    return await _logged_out(request, response)


@describe(tags=["login"])
async def portal_login(request: web.Request) -> web.Response:
    """SAGE's sign-in link, `<auth>/?callback=URL`: the same as /auth/login?next=URL."""
    return await login(request)
