"""Fetch an app's source with git: the branch, tag or commit asked, with submodules, nothing else.

Only https is allowed, plus plain http/git to hosts named in configuration (a test's loopback
server); the same allow-list binds submodules. The build directory and Dockerfile must resolve
inside the checkout, so `..` and symlinks cannot reach the builder's own files.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from . import procs
from .model import BuildFailure, BuildRequest, Checkout

_SHA_RE = re.compile(r"^[0-9a-f]{7,64}$")
_REF_RE = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/+-]{1,255}$")


def check_url(url: str, insecure_hosts: Sequence[str]) -> str:
    """The URL when its scheme and host are allowed; `source_unreachable` otherwise."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url
    if parts.scheme in ("http", "git") and host in insecure_hosts:
        return url
    raise BuildFailure(
        "source_unreachable", f"source url must be https (got scheme {parts.scheme or 'none'!r})"
    )


def _protocol_config(url: str) -> list[str]:
    """git -c options that allow https, and the URL's own scheme, and no other transport."""
    schemes = {"https", urlsplit(url).scheme}
    opts = ["-c", "protocol.allow=never"]
    for scheme in sorted(schemes):
        opts += ["-c", f"protocol.{scheme}.allow=always"]
    return opts


def _git_env(home: Path) -> dict[str, str]:
    """An environment with no prompts, no user or system git config and no credential helpers."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",
    }


def _prepare(dest: Path) -> Path:
    """Make the (new) checkout directory and a private HOME beside it; return the HOME."""
    dest.mkdir(parents=True)
    home = dest.parent / (dest.name + ".home")
    home.mkdir()
    return home


def inside(root: Path, relative: str) -> Path | None:
    """`root/relative` resolved, when it stays within `root` (symlinks followed); else None."""
    if os.path.isabs(relative) or "\x00" in relative:
        return None
    root = root.resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        return None
    return target


def locate(root: Path, commit: str, directory: str, dockerfile: str) -> Checkout:
    """The build context and Dockerfile inside the checkout at `root`, or `dockerfile_missing`."""
    context = inside(root, directory or ".")
    if context is None or not context.is_dir():
        raise BuildFailure(
            "dockerfile_missing",
            f"directory {directory!r} is not a directory inside the repository",
        )
    relative = context.relative_to(root.resolve()) / (dockerfile or "Dockerfile")
    path = inside(root, str(relative))
    if path is None:
        raise BuildFailure("dockerfile_missing", f"Dockerfile {dockerfile!r} leaves the repository")
    if not path.is_file():
        raise BuildFailure(
            "dockerfile_missing", f"no Dockerfile {dockerfile!r} in directory {directory!r}"
        )
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return Checkout(root, commit, context, path, digest)


class GitFetcher:
    """Fetches a request's source into a directory with the git command line."""

    def __init__(self, insecure_hosts: Sequence[str] = (), timeout: float = 300.0) -> None:
        self.insecure_hosts = list(insecure_hosts)
        self.timeout = timeout

    async def fetch(self, request: BuildRequest, dest: Path, log: Callable[[str], None]) -> str:
        """Fetch into `dest` (which must not exist); return the commit checked out."""
        url = check_url(request.url, self.insecure_hosts)
        for name, ref in (("branch", request.branch), ("tag", request.tag)):
            if ref is not None and not _REF_RE.match(ref):
                raise BuildFailure("source_unreachable", f"not a valid git {name}: {ref!r}")
        if request.commit is not None and not _SHA_RE.match(request.commit):
            raise BuildFailure("source_unreachable", f"not a commit id: {request.commit!r}")
        git = Git(dest, _git_env(_prepare(dest)), _protocol_config(url), log)
        try:
            async with asyncio.timeout(self.timeout):
                commit = await self._checkout(git, url, request)
        except TimeoutError:
            raise BuildFailure(
                "source_unreachable", f"fetching the source took longer than {self.timeout:.0f}s"
            ) from None
        log(f"source at commit {commit}")
        return commit

    async def _checkout(self, git: Git, url: str, request: BuildRequest) -> str:
        await git("init", "-q", ".")
        await git("remote", "add", "origin", url)
        if request.tag:
            ref = f"refs/tags/{request.tag}"
        elif request.branch:
            ref = f"refs/heads/{request.branch}"
        else:
            ref = "HEAD"
        if request.commit and not await git.ok(
            "fetch", "-q", "--depth", "1", "origin", request.commit
        ):
            # A server that refuses a bare commit: fetch the whole ref, find the commit in it.
            await git("fetch", "-q", "origin", ref, what=f"{ref} from {url}")
        elif not request.commit:
            await git("fetch", "-q", "--depth", "1", "origin", ref, what=f"{ref} from {url}")
        target = request.commit or "FETCH_HEAD"
        await git("checkout", "-q", "--detach", target, what=f"commit {target}")
        if (git.cwd / ".gitmodules").exists():
            await git(
                "submodule", "update", "--init", "--recursive", "--depth", "1", what="submodules"
            )
        return (await git("rev-parse", "HEAD")).strip()


class Git:
    """git in one working tree, with a fixed environment and protocol allow-list."""

    def __init__(self, cwd: Path, env: dict[str, str], opts: list[str], log: Callable[[str], None]):
        self.cwd, self.env, self.opts, self.log = cwd, env, opts, log

    async def _run(self, args: tuple[str, ...]) -> procs.Completed:
        return await procs.run(
            ["git", *self.opts, *args], env=self.env, cwd=self.cwd, sink=self.log
        )

    async def ok(self, *args: str) -> bool:
        return (await self._run(args)).returncode == 0

    async def __call__(self, *args: str, what: str | None = None) -> str:
        done = await self._run(args)
        if done.returncode != 0:
            raise BuildFailure(
                "source_unreachable",
                f"could not fetch {what or ' '.join(args)} (git exit {done.returncode})",
            )
        return done.output
