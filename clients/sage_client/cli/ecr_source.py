"""Where `sage ecr app submit` reads the description: a file, or a git repository it clones.

SAGE's ECR read `sage.yaml` from the repository itself; here the user's own machine clones it
(`git clone --depth 1`, with the user's own git credentials) and sends the file with the
repository's URL and branch, so the server never needs to reach the repository to be told of it.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from .common import Failed

DESCRIPTION_FILES = ("sage.yaml", "sage.yml", "sage.json")
_REMOTE = re.compile(r"^((https?|git|ssh|file)://\S+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+)$")
CLONE_TIMEOUT = 300


@dataclass(frozen=True)
class Description:
    """The description's bytes, their type, and what the request adds (url, branch)."""

    body: bytes
    content_type: str
    url: str | None = None
    branch: str | None = None


def is_repository(text: str) -> bool:
    """A git URL (`https://...`, `git://...`, `git@host:path`), not a file on this machine."""
    return bool(_REMOTE.match(text)) and not Path(text).exists()


def split_ref(text: str) -> tuple[str, str | None]:
    """`https://host/org/repo@dev` -> (`https://host/org/repo`, `dev`); no `@branch`: None."""
    head, at, tail = text.rpartition("@")
    if at and tail and "/" in head and not re.search(r"[/:\s]", tail):
        return head, tail
    return text, None


# `scheme://userinfo@`: a password anywhere, or any user name in a scheme other than ssh.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)@")


def refuse_credentials(url: str | None) -> None:
    """Stop before cloning or sending a URL with a user name or password (or a token) in it:
    the ECR refuses them, and a query string is no place for a secret."""
    match = _USERINFO.match(url or "")
    if match and (":" in match[2] or match[1].lower() not in ("ssh", "git+ssh", "ssh+git")):
        raise Failed(
            "the repository URL has credentials in it (a user name, password or token): the "
            "ECR shows source URLs to the app's readers and refuses them; its builder fetches "
            "public repositories anonymously. Give the URL without them."
        )


def _kind(path: Path) -> str:
    return "application/json" if path.suffix.lower() == ".json" else "application/yaml"


def read_file(path: Path) -> Description:
    """The file as it is, after checking locally that it parses (a clearer error, sooner)."""
    body = path.read_bytes()
    try:
        yaml.safe_load(body)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise Failed(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return Description(body, _kind(path))


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        # git from PATH, as the user runs it; arguments are a list (no shell), URLs checked above
        done = subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=CLONE_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise Failed("git is not installed: install it to submit from a repository") from None
    except subprocess.TimeoutExpired:
        raise Failed(f"git {args[0]} took longer than {CLONE_TIMEOUT} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise Failed(f"git {args[0]} failed: {lines[-1] if lines else done.returncode}")
    return done.stdout.strip()


def read_repository(url: str, branch: str | None) -> Description:
    """Clone `url` (at `branch`, else its default branch) and read its sage.yaml (or .json)."""
    if not _REMOTE.match(url) or url.startswith("-") or (branch or "").startswith("-"):
        raise Failed(f"not a git repository URL: {url!r}")
    with tempfile.TemporaryDirectory(prefix="sage-submit-") as tmp:
        work = Path(tmp) / "repo"
        _git(
            "clone", "-q", "--depth", "1", *(["--branch", branch] if branch else []), url, str(work)
        )
        found = [work / name for name in DESCRIPTION_FILES if (work / name).is_file()]
        if not found:
            names = ", ".join(DESCRIPTION_FILES)
            raise Failed(f"{url} has none of {names} at the top of the repository")
        if branch is None:
            head = _git("rev-parse", "--abbrev-ref", "HEAD", cwd=work)
            branch = head if head != "HEAD" else None
        read = read_file(found[0])
    return Description(read.body, read.content_type, url=url, branch=branch)
