"""`sage-admin`: the operator's first login, straight against the database the service uses."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

from tests.fixtures.auth import call

SAGE_ADMIN = Path(sys.executable).parent / "sage-admin"


@pytest.fixture
def sage_admin(database_url):
    """Run the installed `sage-admin` with the test database: (exit code, stdout, stderr)."""
    assert SAGE_ADMIN.exists(), "sage-admin is not installed: pip install -e services/auth"
    env = {**os.environ, "SAGE_AUTH_DATABASE_URL": database_url}

    async def run(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            str(SAGE_ADMIN),
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        return proc.returncode, out.decode(), err.decode()

    return run


async def test_first_login_user_add_then_token_add(http, auth_url, sage_admin):
    name = f"first-{uuid.uuid4().hex[:8]}"
    code, out, _ = await sage_admin("user", "add", name, "--admin", "--approved", "--name", "First")
    assert code == 0 and out.startswith(name)
    code, out, err = await sage_admin("token", "add", name)
    assert code == 0 and err == ""
    token = out.strip()
    assert out == token + "\n" and token.startswith("sage_")  # only the token on stdout
    status, me = await call(http, "GET", f"{auth_url}/auth/whoami", token=token)
    assert status == 200
    assert (me["username"], me["name"]) == (name, "First")
    assert me["is_admin"] is True and me["is_approved"] is True
    assert me["scopes"] == ["all"]


async def test_user_add_of_an_existing_user_updates_flags_and_succeeds(http, auth_url, sage_admin):
    name = f"again-{uuid.uuid4().hex[:8]}"
    assert (await sage_admin("user", "add", name, "--approved"))[0] == 0
    code, _, err = await sage_admin("user", "add", name, "--admin")
    assert code == 0 and "exists" in err
    _, out, _ = await sage_admin("token", "add", name)
    _, me = await call(http, "GET", f"{auth_url}/auth/whoami", token=out.strip())
    assert me["is_admin"] is True and me["is_approved"] is True  # kept what was not given
    assert (await sage_admin("user", "set", name, "--no-approved"))[0] == 0
    _, out, _ = await sage_admin("token", "add", name)
    _, me = await call(http, "GET", f"{auth_url}/auth/whoami", token=out.strip())
    assert me["is_approved"] is False


async def test_token_add_with_scope_days_and_name(http, auth_url, sage_admin):
    name = f"scoped-{uuid.uuid4().hex[:8]}"
    await sage_admin("user", "add", name)
    code, out, _ = await sage_admin(
        "token", "add", name, "--name", "ci", "--scope", "storage:read", "--days", "2"
    )
    assert code == 0
    _, me = await call(http, "GET", f"{auth_url}/auth/whoami", token=out.strip())
    assert me["scopes"] == ["storage:read"]
    _, listing, _ = await sage_admin("token", "list", name)
    assert "\tci\tstorage:read\texpires " in listing


async def test_groups_from_the_command_line(http, auth_url, sage_admin):
    name, group = f"member-{uuid.uuid4().hex[:8]}", f"team-{uuid.uuid4().hex[:8]}"
    await sage_admin("user", "add", name)
    assert (await sage_admin("group", "add", group))[0] == 0
    assert (await sage_admin("group", "add", group))[0] == 0  # again: harmless
    assert (await sage_admin("group", "add-member", group, name))[0] == 0
    _, out, _ = await sage_admin("token", "add", name)
    _, me = await call(http, "GET", f"{auth_url}/auth/whoami", token=out.strip())
    assert me["groups"] == [group]
    _, users, _ = await sage_admin("user", "list")
    assert f"{name}\t-\t{group}" in users.splitlines()


async def test_revoke_from_the_command_line(http, auth_url, sage_admin):
    name = f"revoked-{uuid.uuid4().hex[:8]}"
    await sage_admin("user", "add", name)
    _, token, _ = await sage_admin("token", "add", name)
    _, listing, _ = await sage_admin("token", "list", name)
    token_id = listing.split("\t")[0]
    assert (await sage_admin("token", "revoke", token_id))[0] == 0
    status, _ = await call(http, "GET", f"{auth_url}/auth/whoami", token=token.strip())
    assert status == 401


async def test_errors_are_one_line_and_nonzero(sage_admin):
    code, out, err = await sage_admin("token", "add", f"ghost-{uuid.uuid4().hex[:8]}")
    assert code == 1 and out == "" and err.startswith("Error: no user ghost-")
    code, out, err = await sage_admin("user", "add", "Not-Valid")
    assert code == 2 and out == "" and "USERNAME" in err
    code, _, err = await sage_admin("token", "add", "whoever", "--scope", "BAD SCOPE")
    assert code == 2 and "not a scope" in err


async def test_unreachable_database_is_a_clear_error():
    proc = await asyncio.create_subprocess_exec(
        str(SAGE_ADMIN),
        "user",
        "list",
        env={**os.environ, "SAGE_AUTH_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 1 and out == b""
    assert b"cannot use the auth database" in err and b"Traceback" not in err
