"""Institutional login against a real OpenID provider (panva/oidc-provider under node) on loopback.

The test drives the authorization code flow with PKCE form by form, as a browser would: the auth
service redirects to the provider, the provider's login and consent forms are submitted, the
provider redirects back with a code, and the session that results mints a working token.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp
import pytest
import yarl

from sage_auth.state import STORE
from tests.fixtures.auth import call, free_socket, start_auth

REPO = Path(__file__).resolve().parents[2]
OIDC_DIR = REPO / "services" / "auth" / "tests" / "oidc"
# scripts/setup.sh installs the same pinned oidc-provider into var/oidc; else this test does,
# into var/oidc-auth.
MODULE_DIRS = (REPO / "var" / "oidc", REPO / "var" / "oidc-auth")


async def oidc_modules() -> Path:
    """A directory whose node_modules holds oidc-provider, installed with npm when missing."""
    for directory in MODULE_DIRS:
        if (directory / "node_modules" / "oidc-provider" / "package.json").exists():
            return directory
    npm = shutil.which("npm")
    assert npm, "npm is needed to install oidc-provider for the login tests (apt-get install npm)"
    target = MODULE_DIRS[-1]
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(OIDC_DIR / "package.json", target / "package.json")
    proc = await asyncio.create_subprocess_exec(
        npm,
        "install",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        cwd=target,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=600)
    assert proc.returncode == 0, out.decode()[-2000:]
    return target


def free_port() -> int:
    with free_socket() as sock:
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
async def oidc(database_url, auth_key_dir, service_secrets, tmp_path_factory):
    """A provider on one loopback port and an auth service using it on another."""
    node = shutil.which("node")
    assert node, "node is needed to run the OpenID provider for the login tests"
    modules = await oidc_modules()
    sock = free_socket()
    auth_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    client_id, client_secret = "sage-auth-test", secrets.token_urlsafe(24)
    log_path = tmp_path_factory.mktemp("oidc") / "provider.log"
    log = log_path.open("wb")
    env = {
        **os.environ,
        "OIDC_MODULES_DIR": str(modules),
        "OIDC_PORT": str(port),
        "OIDC_CLIENT_ID": client_id,
        "OIDC_CLIENT_SECRET": client_secret,
        "OIDC_REDIRECT_URI": f"{auth_url}/auth/callback",
        "OIDC_ACCOUNTS": '{"odd-login": {"preferred_username": "Dr. Odd", "email": "o@x.org"}}',
    }
    proc = await asyncio.create_subprocess_exec(
        node, str(OIDC_DIR / "server.mjs"), env=env, stdout=log, stderr=log
    )
    auth = None
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                assert proc.returncode is None, log_path.read_text()
                try:
                    async with http.get(f"{issuer}/.well-known/openid-configuration") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "the OpenID provider did not start"
                await asyncio.sleep(0.1)
        auth = await start_auth(
            database_url,
            auth_key_dir,
            service_secrets,
            sock=sock,
            oidc_issuer=issuer,
            oidc_client_id=client_id,
            oidc_client_secret=client_secret,
        )
        yield SimpleNamespace(url=auth.url, issuer=issuer, auth=auth)
    finally:
        if auth is not None:
            await auth.stop()
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), timeout=10)
        log.close()


@pytest.fixture
async def browser() -> aiohttp.ClientSession:
    """A client with a cookie jar that keeps cookies of IP-address hosts, as a browser would."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and self.action is None and (a.get("method") or "").lower() == "post":
            self.action = a.get("action")
        elif tag == "input" and a.get("name") and self.action is not None:
            self.fields[a["name"] or ""] = a.get("value") or ""


async def log_in(browser, auth_url: str, login: str, path: str = "/auth/login", headers=None):
    """Go through the provider's forms as `login`; the response that comes back to auth_url."""
    resp = await browser.get(auth_url + path, headers=headers)
    for _ in range(6):
        text = await resp.text()
        if str(resp.url).startswith(auth_url):
            return resp, text
        form = _Form()
        form.feed(text)
        assert form.action, f"no form at {resp.url}: {text[:500]}"
        data = dict(form.fields)
        if "login" in data:
            data.update(login=login, password="anything")
        resp = await browser.post(urljoin(str(resp.url), form.action), data=data, headers=headers)
    raise AssertionError("the login did not come back to the auth service")


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_login_redirect_carries_state_nonce_and_s256_challenge(browser, oidc):
    async with browser.get(f"{oidc.url}/auth/login", allow_redirects=False) as resp:
        assert resp.status == 303
        location = resp.headers["Location"]
    assert location.startswith(oidc.issuer)
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 40 and len(query["nonce"]) >= 40
    assert len(query["code_challenge"]) == 43
    assert query["redirect_uri"] == f"{oidc.url}/auth/callback"


async def test_first_login_makes_an_unapproved_user_and_a_session_that_mints_a_token(browser, oidc):
    login = uniq("alice")
    resp, page = await log_in(browser, oidc.url, login)
    assert resp.status == 200 and f"Logged in as <b>{login}</b>" in page
    cookie = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith("sage_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/auth" in cookie
    url = f"{oidc.url}/auth/session/tokens"
    status, new = await call(browser, "POST", url, json={"name": "cli"})
    assert status == 201 and new["token"].startswith("sage_")
    async with aiohttp.ClientSession() as http:  # the token alone, no cookies
        status, me = await call(http, "GET", f"{oidc.url}/auth/whoami", token=new["token"])
    assert status == 200
    assert me["username"] == login and me["is_approved"] is False and me["is_admin"] is False
    assert me["email"] == f"{login}@example.org" and me["name"] == f"Test {login}"


async def test_second_login_finds_the_same_user(browser, oidc, auth_app):
    login = uniq("repeat")
    await log_in(browser, oidc.url, login)
    browser.cookie_jar.clear()
    resp, page = await log_in(browser, oidc.url, login)
    assert f"<b>{login}</b>" in page
    count = await auth_app[STORE].pool.fetchval(
        "SELECT count(*) FROM users WHERE username LIKE $1", f"{login}%"
    )
    assert count == 1


async def test_a_taken_username_gets_a_suffix_not_the_existing_account(browser, oidc, make_user):
    login = uniq("taken")
    await make_user(login, admin=True, email="someone-else@example.org")
    resp, page = await log_in(browser, oidc.url, login)
    assert f"<b>{login}2</b>" in page


async def test_existing_account_with_the_verified_email_is_linked(browser, oidc, make_user):
    login = uniq("linked")
    await make_user(login, approved=True, email=f"{login}@example.org")
    await log_in(browser, oidc.url, login)
    url = f"{oidc.url}/auth/session/tokens"
    status, new = await call(browser, "POST", url, json={"name": "t"})
    assert status == 201
    async with aiohttp.ClientSession() as http:
        _, me = await call(http, "GET", f"{oidc.url}/auth/whoami", token=new["token"])
    assert me["username"] == login and me["is_approved"] is True


async def test_usernames_are_derived_safely_from_odd_claims(browser, oidc):
    resp, page = await log_in(browser, oidc.url, "odd-login")
    assert "Logged in as <b>dr.-odd" in page


async def test_callback_answers_json_to_clients_that_ask(browser, oidc):
    login = uniq("json")
    resp, text = await log_in(browser, oidc.url, login, headers={"Accept": "application/json"})
    assert resp.content_type == "application/json"
    assert json.loads(text) == {"username": login, "is_approved": False}


async def test_callback_returns_to_the_next_path_on_this_site_only(browser, oidc):
    login = uniq("next")
    resp, _ = await log_in(browser, oidc.url, login, "/auth/login?next=/auth/whoami")
    assert any(h.status == 303 and h.headers["Location"] == "/auth/whoami" for h in resp.history)
    status, _ = await call(browser, "GET", f"{oidc.url}/auth/login?next=//evil.example/x")
    assert status == 400


async def test_session_tokens_need_a_session_and_json(browser, oidc):
    url = f"{oidc.url}/auth/session/tokens"
    assert (await call(browser, "POST", url, json={"name": "x"}))[0] == 401
    await log_in(browser, oidc.url, uniq("csrf"))
    # a cross-site form post cannot send JSON: refused
    assert (await call(browser, "POST", url, data={"name": "x"}))[0] == 415
    assert (await call(browser, "POST", url, json={"name": "x"}))[0] == 201


async def test_logout_ends_the_session(browser, oidc):
    await log_in(browser, oidc.url, uniq("bye"))
    session = browser.cookie_jar.filter_cookies(yarl.URL(oidc.url + "/auth/"))["sage_session"].value
    assert (await call(browser, "POST", f"{oidc.url}/auth/logout"))[0] == 204
    url = f"{oidc.url}/auth/session/tokens"
    assert (await call(browser, "POST", url, json={"name": "x"}))[0] == 401
    # and the old cookie value is dead server-side, not only forgotten by the browser
    status, _ = await call(
        browser, "POST", url, json={"name": "x"}, headers={"Cookie": f"sage_session={session}"}
    )
    assert status == 401


async def test_a_callback_is_good_once(browser, oidc):
    resp, _ = await log_in(browser, oidc.url, uniq("replay"))
    callback = next(str(h.url) for h in [*resp.history, resp] if "/auth/callback" in str(h.url))
    status, body = await call(browser, "GET", callback)
    assert status == 401 and "start again" in body["detail"]


async def test_made_up_state_or_provider_error_is_refused(browser, oidc):
    status, body = await call(browser, "GET", f"{oidc.url}/auth/callback?state=made-up&code=x")
    assert status == 401
    status, body = await call(browser, "GET", f"{oidc.url}/auth/callback?error=access_denied")
    assert status == 401 and "access_denied" in body["detail"]
    status, _ = await call(browser, "GET", f"{oidc.url}/auth/callback")
    assert status == 400


async def test_login_is_404_where_no_provider_is_configured(browser, auth_url):
    status, body = await call(browser, "GET", f"{auth_url}/auth/login")
    assert status == 404 and "not configured" in body["detail"]
