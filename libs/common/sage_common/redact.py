"""Credentials in URLs: the rule that refuses them in what users submit, and the redaction of
them from whatever is logged or shown (git itself prints remote URLs, passwords and all).

A URL's user information is a credential unless it is the plain login of an ssh URL
(`ssh://git@host/x`, `git@host:org/repo`): http, https and git need no user name, and a token
written there (`https://ghp_...@github.com/...`) is as secret as a password.
"""

from __future__ import annotations

import re

SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})
# Prefixes of well-known access tokens (GitHub, GitLab, Atlassian), refused even as an ssh login.
_TOKEN_PREFIXES = (
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "gldt-",
    "glrt-",
    "glptt-",
    "gloas-",
    "glcbt-",
    "atbb",
    "atatt",
)
_PLAIN_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_SCHEME_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)")
# `scheme://userinfo@` anywhere in a text; the userinfo runs to the authority's last `@`.
_USERINFO_IN_TEXT = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*)://([^/\s\"'<>?#]+)@")


def plain_user(user: str) -> bool:
    """Whether `user` reads as a login name (`git`, `deploy`), not as a token."""
    return bool(_PLAIN_USER.match(user)) and not user.lower().startswith(_TOKEN_PREFIXES)


def _userinfo_problem(userinfo: str, ssh: bool, scheme: str) -> str | None:
    user, colon, _ = userinfo.partition(":")
    if colon:
        return "has a password in it"
    if ssh:
        return None if plain_user(user) else "has a token as its user name"
    return f"has a user name in it ({scheme} needs none, and a token written there is a secret)"


def url_credentials(url: str) -> str | None:
    """Why `url` carries credentials (a phrase without the secret), or None when it does not."""
    match = _SCHEME_URL.match(url)
    if match:
        userinfo, at, _ = match[2].rpartition("@")
        scheme = match[1].lower()
        return _userinfo_problem(userinfo, scheme in SSH_SCHEMES, scheme) if at else None
    # scp-like `user@host:path`: its login is an ssh one.
    userinfo, at, _ = url.split("/", 1)[0].rpartition("@")
    return _userinfo_problem(userinfo, True, "ssh") if at else None


def _redacted(match: re.Match[str]) -> str:
    scheme, userinfo = match[1], match[2]
    user, colon, _ = userinfo.partition(":")
    if scheme.lower() in SSH_SCHEMES and plain_user(user):
        return f"{scheme}://{user}{':***' if colon else ''}@"
    return f"{scheme}://***@"


def redact_urls(text: str) -> str:
    """`text` with the credentials of every `scheme://user:password@` in it replaced by `***`;
    a plain ssh login (`ssh://git@host`) stays as it is."""
    return _USERINFO_IN_TEXT.sub(_redacted, text) if "@" in text else text


def redact_url(url: str) -> str:
    """One URL as it may be shown: `redact_urls`, and a scp-like `token@host:path` as `***@...`."""
    if url_credentials(url) is None:
        return url
    if _SCHEME_URL.match(url):
        return redact_urls(url)
    head, slash, tail = url.partition("/")
    return "***@" + head.rpartition("@")[2] + slash + tail
