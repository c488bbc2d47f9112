"""`sage auth ...` against the stand-in: the documented requests go out, answers come back."""

from __future__ import annotations

from clients.tests.standin import GOOD_TOKEN, StandIn


def test_whoami_sends_the_sage_scheme_and_prints_json(sage, server: StandIn) -> None:
    me = sage.json("auth", "whoami")
    assert me["username"] == "alice"
    assert me["groups"] == ["reviewers"]
    assert server.state.requests[-1]["headers"]["Authorization"] == f"sage {GOOD_TOKEN}"


def test_json_flag_works_before_the_command_too(sage) -> None:
    result = sage("--json", "auth", "whoami")
    assert result.exit_code == 0
    assert '"username": "alice"' in result.stdout


def test_whoami_human_output_is_a_table(sage) -> None:
    result = sage("auth", "whoami")
    assert result.exit_code == 0
    assert "username" in result.stdout and "alice" in result.stdout
    assert "{" not in result.stdout


def test_token_option_beats_the_environment(sage) -> None:
    result = sage("auth", "whoami", "--token", GOOD_TOKEN, env={"SAGE_USER_TOKEN": "wrong"})
    assert result.exit_code == 0


def test_token_create_sends_name_scopes_and_days(sage, server: StandIn) -> None:
    created = sage.json(
        "auth", "token", "create", "laptop", "--scope", "storage", "--scope", "ecr", "--days", "30"
    )
    assert created["name"] == "laptop"
    assert created["token"].startswith("secret-")
    assert server.state.user_tokens[0]["_body"] == {
        "name": "laptop",
        "scopes": ["storage", "ecr"],
        "expires_in_days": 30,
    }


def test_token_create_prints_the_secret_alone_on_stdout(sage, server: StandIn) -> None:
    result = sage("auth", "token", "create", "ci")
    assert result.exit_code == 0
    secret = result.stdout.strip()
    assert secret in server.state.tokens
    assert "not shown again" in result.stderr
    # the new token works
    assert sage.json("auth", "whoami", "--token", secret)["username"] == "alice"


def test_token_list_and_revoke(sage, server: StandIn) -> None:
    sage.json("auth", "token", "create", "one")
    listed = sage.json("auth", "token", "list")
    assert [t["name"] for t in listed] == ["one"]
    assert sage.json("auth", "token", "revoke", listed[0]["id"]) == {"id": "1", "revoked": True}
    assert server.state.user_tokens[0]["revoked"] is True
    human = sage("auth", "token", "revoke", "1")
    assert human.exit_code == 0 and "revoked token 1" in human.stdout


def test_revoking_an_unknown_token_fails_clearly(sage) -> None:
    result = sage("auth", "token", "revoke", "99")
    assert result.exit_code == 1
    assert result.stderr.strip() == "sage: error: no such token (404)"
