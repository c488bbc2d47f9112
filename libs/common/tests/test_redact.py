"""Credentials in URLs: which URLs carry them, and their redaction from logs and documents."""

from __future__ import annotations

import io
import json
import logging

import pytest

from sage_common.logs import RedactingJsonFormatter, setup_logging
from sage_common.redact import redact_url, redact_urls, url_credentials


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/waggle-sensor/plugin-iio.git",
        "http://127.0.0.1:8000/app.git",
        "git://127.0.0.1:9418/app.git",
        "git@github.com:org/repo.git",
        "ssh://git@host/x",
        "ssh://git@github.com:22/org/repo.git",
        "ssh://deploy@git.example.org/lab/app.git",
        "https://git.example.org/lab/app@v1",  # an `@` in the path is not user information
    ],
)
def test_urls_without_credentials_are_accepted(url):
    assert url_credentials(url) is None
    assert redact_url(url) == url


@pytest.mark.parametrize(
    ("url", "why", "secret"),
    [
        ("https://user:hunter22@host/org/repo.git", "password", "hunter22"),
        (
            "https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/org/repo",
            "user name",
            "ghp_abcdefghij",
        ),
        ("https://oauth2:glpat-abcdefghij0123456789@gitlab.com/org/repo.git", "password", "glpat"),
        ("https://x-access-token:ghs_0123456789abcdef@github.com/org/repo", "password", "ghs_"),
        ("https://jdoe@bitbucket.org/team/repo.git", "user name", "jdoe"),
        ("http://tok3n@127.0.0.1:8000/app.git", "user name", "tok3n"),
        ("git://tok3n@127.0.0.1/app.git", "user name", "tok3n"),
        ("ssh://git:hunter22@host/x", "password", "hunter22"),
        ("ssh://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/org/repo", "token", "ghp_"),
        ("glpat-abcdefghij0123456789@gitlab.com:org/repo.git", "token", "glpat"),
        ("user:hunter22@host:org/repo.git", "password", "hunter22"),
        ("https://user:hunter@22@host/org/repo.git", "password", "22@"),
    ],
)
def test_urls_with_credentials_are_named_without_the_secret(url, why, secret):
    problem = url_credentials(url)
    assert problem is not None and why in problem
    assert secret not in problem
    shown = redact_url(url)
    assert secret not in shown and "***" in shown
    if "://" in url:  # in free text only URLs with a scheme can be told apart
        assert secret not in redact_urls(f"fatal: could not read from '{url}'")


def test_redaction_keeps_hosts_and_paths_and_a_plain_ssh_login():
    assert redact_url("https://oauth2:TOKEN@gitlab.com/org/repo.git") == (
        "https://***@gitlab.com/org/repo.git"
    )
    assert redact_url("ssh://git:hunter22@host/x") == "ssh://git:***@host/x"
    assert redact_url("ghp_abc123@github.com:org/repo") == "***@github.com:org/repo"


def test_every_url_in_a_text_loses_its_credentials():
    text = (
        "fatal: clone of 'http://deploy:s3cret-pw@127.0.0.1:1/private.git' into submodule path "
        "'/w/vendor' failed; then https://ghp_abcdefghij0123456789@github.com/o/r and "
        "amqp://guest:guest@127.0.0.1:5672/ failed too; mail joe@example.org, see "
        "https://example.org/a@b and ssh://git@github.com/o/r"
    )
    assert redact_urls(text) == (
        "fatal: clone of 'http://***@127.0.0.1:1/private.git' into submodule path "
        "'/w/vendor' failed; then https://***@github.com/o/r and "
        "amqp://***@127.0.0.1:5672/ failed too; mail joe@example.org, see "
        "https://example.org/a@b and ssh://git@github.com/o/r"
    )


@pytest.fixture
def json_lines():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    setup_logging("redact-test", "INFO")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def test_service_log_lines_carry_no_url_credentials_in_message_fields_or_traceback(json_lines):
    assert isinstance(logging.getLogger().handlers[0].formatter, RedactingJsonFormatter)
    log = logging.getLogger("test.redact")
    url = "https://oauth2:glpat-s3cretvalue0123@gitlab.com/org/repo.git"
    log.warning("git said: fatal: unable to access '%s'", url, extra={"source": url})
    try:
        raise RuntimeError(f"could not fetch from {url}")
    except RuntimeError:
        log.exception("fetch crashed")
    lines = json_lines()
    mine = [entry for entry in lines if entry["logger"] == "test.redact"]
    assert len(mine) == 2
    assert mine[0]["message"] == (
        "git said: fatal: unable to access 'https://***@gitlab.com/org/repo.git'"
    )
    assert mine[0]["source"] == "https://***@gitlab.com/org/repo.git"
    assert "https://***@gitlab.com" in mine[1]["exc_info"]
    assert "s3cretvalue" not in json.dumps(lines)
