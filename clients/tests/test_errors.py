"""Every failure is one line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

from clients.tests.standin import Failure, StandIn
from sage_client.errors import SageError, error_from_answer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("sage: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_bad_token_is_one_line_with_the_status(sage, server: StandIn) -> None:
    result = sage("auth", "whoami", env={"SAGE_USER_TOKEN": "wrong"})
    assert result.exit_code == 1
    assert _one_error_line(result.stderr) == "sage: error: invalid, expired or revoked token (401)"
    assert result.stdout == ""


def test_missing_token_hints_at_the_variable(sage) -> None:
    result = sage("auth", "whoami", env={"SAGE_USER_TOKEN": None})
    assert result.exit_code == 1
    assert "set SAGE_USER_TOKEN or pass --token" in _one_error_line(result.stderr)


def test_not_found_uses_the_problem_detail(sage) -> None:
    result = sage("storage", "bucket", "show", "no-such-bucket")
    assert result.exit_code == 1
    assert _one_error_line(result.stderr) == "sage: error: bucket not found (404)"


def test_server_error_uses_the_error_member(sage, server: StandIn) -> None:
    server.state.fail("GET", "/auth/whoami", Failure(500, '{"error": "database is down"}'))
    result = sage("auth", "whoami")
    assert result.exit_code == 1
    assert _one_error_line(result.stderr) == "sage: error: database is down (500)"


def test_html_error_page_is_named_not_dumped(sage, server: StandIn) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1>\n<hr>nginx</body></html>"
    server.state.fail("GET", "/auth/whoami", Failure(502, page, "text/html"))
    result = sage("auth", "whoami")
    assert result.exit_code == 1
    line = _one_error_line(result.stderr)
    assert line == "sage: error: Bad Gateway (the server's answer is not JSON) (502)"


def test_success_that_is_not_json_is_an_error(sage, server: StandIn) -> None:
    server.state.fail("GET", "/auth/whoami", Failure(200, "hello there", "text/plain"))
    result = sage("auth", "whoami", "--json")
    assert result.exit_code == 1
    assert _one_error_line(result.stderr) == "sage: error: the server's answer is not JSON (200)"


def test_connection_refused_names_the_host(sage) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = sage("auth", "whoami", env={"SAGE_HOST": url})
    assert result.exit_code == 1
    assert (
        _one_error_line(result.stderr)
        == f"sage: error: cannot connect to {url}: connection refused"
    )


def test_timeout_is_reported_with_the_limit(sage, server: StandIn) -> None:
    server.state.hang_seconds = 2.0
    result = sage("auth", "whoami", "--timeout", "0.3")
    assert result.exit_code == 1
    assert (
        _one_error_line(result.stderr) == f"sage: error: no answer from {server.url} within 0.3 s"
    )


def test_a_host_that_is_not_a_url_is_refused(sage) -> None:
    result = sage("auth", "whoami", env={"SAGE_HOST": "localhost:8080"})
    assert result.exit_code == 1
    assert "not an http(s) URL" in _one_error_line(result.stderr)


def test_the_installed_command_prints_no_traceback() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "sage_client", "--host", url, "storage", "bucket", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert (
        _one_error_line(done.stderr) == f"sage: error: cannot connect to {url}: connection refused"
    )


def test_usage_errors_exit_with_2(sage) -> None:
    result = sage("storage", "bucket", "create", "--name", "x")
    assert result.exit_code == 2
    assert "--datatype" in result.stderr


def test_problem_field_errors_are_summed_up_on_one_line() -> None:
    body = (
        '{"detail": "the request is not valid", "errors": ['
        '{"loc": ["body", "name"], "msg": "Field required"},'
        '{"loc": ["version"], "msg": "not semver"}]}'
    )
    error = error_from_answer(422, "Unprocessable", body)
    assert str(error) == "the request is not valid: name: Field required; version: not semver (422)"
    assert error.body["errors"][1]["msg"] == "not semver"


def test_retry_after_is_read_and_5xx_is_retryable() -> None:
    error = error_from_answer(503, "Service Unavailable", '{"detail": "busy"}', "7")
    assert (error.status, error.retry_after, error.retryable) == (503, 7.0, True)
    assert not SageError(404, "gone").retryable
