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
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import aiohttp
import pytest
import yarl

from sage_auth.state import STORE
from sage_common.auth import token_hash
from tests.fixtures.auth import call, free_socket, start_auth
from tests.support.names import uniq
from tests.support.ports import free_port

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


@pytest.fixture(scope="module")
async def oidc(database_url, auth_key_dir, service_secrets, tmp_path_factory):
    """A provider on one loopback port and an auth service using it on another."""
    node = shutil.which("node")
    assert node, "node is needed to run the OpenID provider for the login tests"
    modules = await oidc_modules()
    sock, deployed_sock = free_socket(), free_socket()
    auth_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    deployed_url = f"http://127.0.0.1:{deployed_sock.getsockname()[1]}"
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
        "OIDC_REDIRECT_URI": f"{auth_url}/auth/callback {deployed_url}/auth/callback",
        "OIDC_ACCOUNTS": '{"odd-login": {"preferred_username": "Dr. Odd", "email": "o@x.org"}}',
    }
    proc = await asyncio.create_subprocess_exec(
        node, str(OIDC_DIR / "server.mjs"), env=env, stdout=log, stderr=log
    )
    auth = deployed = None
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
        # The same system as deployed: public on https, the portal's cookies on its domain.
        deployed = await start_auth(
            database_url,
            auth_key_dir,
            service_secrets,
            sock=deployed_sock,
            public_url="https://sage.example.org",
            cookie_domain=".example.org",
            oidc_redirect_uri=f"{deployed_url}/auth/callback",
            oidc_issuer=issuer,
            oidc_client_id=client_id,
            oidc_client_secret=client_secret,
        )
        yield SimpleNamespace(url=auth.url, issuer=issuer, auth=auth, deployed_url=deployed_url)
    finally:
        for running in (auth, deployed):
            if running is not None:
                await running.stop()
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


def set_cookies(resp) -> dict[str, str]:
    """name -> the whole Set-Cookie header, of one response."""
    return {h.split("=", 1)[0]: h for h in resp.headers.getall("Set-Cookie", [])}


def attributes(header: str) -> dict[str, str]:
    """The attributes of one Set-Cookie header, names lowercased ("" for flags)."""
    parts = [p.strip() for p in header.split(";")[1:] if p.strip()]
    return {k.lower(): v for k, _, v in (p.partition("=") for p in parts)}


async def provider_callback(browser, auth_url: str, login: str, path: str = "/auth/login") -> str:
    """Start a login and pass the provider's forms, but stop at the callback URL, unvisited."""
    resp = await browser.get(auth_url + path, allow_redirects=False)
    for _ in range(12):
        location = resp.headers.get("Location")
        if location is not None:
            target = urljoin(str(resp.url), location)
            if target.startswith(f"{auth_url}/auth/callback"):
                return target
            resp = await browser.get(target, allow_redirects=False)
            continue
        form = _Form()
        form.feed(await resp.text())
        assert form.action, f"no form at {resp.url}"
        data = dict(form.fields)
        if "login" in data:
            data.update(login=login, password="anything")
        resp = await browser.post(
            urljoin(str(resp.url), form.action), data=data, allow_redirects=False
        )
    raise AssertionError("the provider did not send the browser back")


async def test_login_gives_the_portal_its_cookies_and_a_real_token(browser, oidc, auth_app):
    login = uniq("portal")
    resp, _ = await log_in(browser, oidc.url, login)
    cookies = set_cookies(resp)
    token = cookies["sage_token"].split(";")[0].split("=", 1)[1]
    assert cookies["sage_username"].startswith(f"sage_username={login};")
    for name in ("sage_token", "sage_username"):
        attrs = attributes(cookies[name])
        # the portal reads them with document.cookie: not HttpOnly, for every path
        assert attrs["path"] == "/" and "httponly" not in attrs
        assert attrs["samesite"] == "Strict" and attrs["max-age"] == str(12 * 3600)
        assert "secure" not in attrs and "domain" not in attrs  # http://127.0.0.1: development
    async with aiohttp.ClientSession() as http:
        status, me = await call(http, "GET", f"{oidc.url}/auth/whoami", token=token)
        assert status == 200 and me["username"] == login
        # a real token: listed by name, hashed at rest, expiring with the session, revocable
        _, listed = await call(http, "GET", f"{oidc.url}/auth/tokens", token=token)
        assert [t["name"] for t in listed] == ["portal login"]
        expires = datetime.fromisoformat(listed[0]["expires_at"])
        assert timedelta(hours=11) < expires - datetime.now(UTC) <= timedelta(hours=12)
        stored = await auth_app[STORE].pool.fetchval(
            "SELECT token_hash FROM tokens WHERE id = $1", uuid.UUID(listed[0]["id"])
        )
        assert stored == token_hash(token)
        status, _ = await call(
            http, "DELETE", f"{oidc.url}/auth/tokens/{listed[0]['id']}", token=token
        )
        assert status == 204
        assert (await call(http, "GET", f"{oidc.url}/auth/whoami", token=token))[0] == 401


async def test_deployed_login_cookies_are_secure_and_on_the_cookie_domain(oidc):
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[oidc.deployed_url])
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(f"{oidc.deployed_url}/auth/login", allow_redirects=False) as start:
            binding = attributes(set_cookies(start)["sage_login"])
        assert "httponly" in binding and binding["samesite"] == "Lax" and "secure" in binding
        assert binding["path"] == "/auth" and binding["max-age"] == "600"
        resp, _ = await log_in(browser, oidc.deployed_url, uniq("deployed"))
        assert resp.status == 200
        cookies = set_cookies(resp)
    for name in ("sage_token", "sage_username"):
        attrs = attributes(cookies[name])
        assert "secure" in attrs and attrs["domain"] == ".example.org"
        assert attrs["samesite"] == "Strict" and "httponly" not in attrs
    session = attributes(cookies["sage_session"])
    assert "secure" in session and "httponly" in session and session["samesite"] == "Lax"
    assert attributes(cookies["sage_login"])["max-age"] == "0"  # the binding is spent


async def test_a_callback_replayed_from_another_browser_fails(oidc):
    """Login CSRF: an attacker's callback URL (state and code) opened in the victim's browser."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as attacker:
        callback = await provider_callback(attacker, oidc.url, uniq("attacker"))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as victim:
        # the victim even has a login of their own in progress: its binding is not the attacker's
        await provider_callback(victim, oidc.url, uniq("victim"))
        async with victim.get(callback, allow_redirects=False) as resp:
            body = await resp.json()
            assert resp.status == 401 and "another browser" in body["detail"]
            assert "sage_session" not in set_cookies(resp)
            assert "sage_token" not in set_cookies(resp)


async def test_a_callback_in_the_browser_that_started_the_login_works(oidc):
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        callback = await provider_callback(browser, oidc.url, uniq("own"))
        async with browser.get(callback, allow_redirects=False) as resp:
            assert resp.status == 200 and "sage_token" in set_cookies(resp)


async def test_logout_clears_the_portal_cookies_and_revokes_its_token(browser, oidc):
    resp, _ = await log_in(browser, oidc.url, uniq("leaving"))
    token = set_cookies(resp)["sage_token"].split(";")[0].split("=", 1)[1]
    async with browser.post(f"{oidc.url}/auth/logout") as out:
        assert out.status == 204
        cleared = set_cookies(out)
    for name in ("sage_token", "sage_username", "sage_session"):
        assert (
            cleared[name].startswith(f'{name}="";') and attributes(cleared[name])["max-age"] == "0"
        )
    assert attributes(cleared["sage_token"])["path"] == "/"
    async with aiohttp.ClientSession() as http:
        assert (await call(http, "GET", f"{oidc.url}/auth/whoami", token=token))[0] == 401


async def test_portal_sign_in_and_sign_out_return_to_the_portal_only(browser, oidc):
    """The portal's links: `<auth>/?callback=URL` to sign in, `<auth>/portal-logout/?callback=`."""
    back = f"{oidc.url}/auth/whoami"
    resp, _ = await log_in(browser, oidc.url, uniq("round"), f"/auth/?callback={quote(back)}")
    assert any(h.status == 303 and h.headers["Location"] == back for h in resp.history)
    status, _ = await call(browser, "GET", f"{oidc.url}/auth/?callback=https://evil.example/")
    assert status == 400
    async with browser.get(
        f"{oidc.url}/auth/portal-logout/?callback={quote(back)}", allow_redirects=False
    ) as out:
        assert out.status == 303 and out.headers["Location"] == back
        assert attributes(set_cookies(out)["sage_token"])["max-age"] == "0"
    async with browser.get(
        f"{oidc.url}/auth/portal-logout/?callback=https://evil.example/", allow_redirects=False
    ) as out:
        assert out.status == 200 and "Location" not in out.headers


async def test_a_session_cannot_mint_a_token_that_outlives_it(browser, oidc):
    """A 12-hour session asking for 3650 days is refused; by default its token ends with it."""
    await log_in(browser, oidc.url, uniq("session-life"))
    url = f"{oidc.url}/auth/session/tokens"
    status, body = await call(browser, "POST", url, json={"name": "x", "expires_in_days": 3650})
    assert status == 422 and "outlive" in body["detail"]
    status, new = await call(browser, "POST", url, json={"name": "cli"})
    assert status == 201
    left = datetime.fromisoformat(new["expires_at"]) - datetime.now(UTC)
    assert timedelta(hours=11) < left <= timedelta(hours=12)


def portal_cookie_value(document_cookie: str, key: str) -> str | None:
    """components/auth/auth.ts `_getCookieValue`, line for line."""
    match = next((row for row in document_cookie.split("; ") if row.startswith(f"{key}=")), None)
    if match is None:
        return None
    value = match.split("=")[1]
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


async def test_the_portal_reads_a_working_token_from_its_cookies(browser, oidc):
    """What auth.ts sees in document.cookie after a login is the user and a token that works."""
    login = uniq("portal-read")
    await log_in(browser, oidc.url, login)
    jar = browser.cookie_jar.filter_cookies(yarl.URL(oidc.url + "/apps/"))
    document_cookie = "; ".join(f"{k}={m.coded_value}" for k, m in jar.items())
    token = portal_cookie_value(document_cookie, "sage_token")
    assert portal_cookie_value(document_cookie, "sage_username") == login
    assert "sage_session" not in jar  # HttpOnly and under /auth: never the portal's
    async with aiohttp.ClientSession() as http:
        status, me = await call(http, "GET", f"{oidc.url}/auth/users/~self", token=token)
    assert status == 200 and me["username"] == login and me["last_login"] is not None
