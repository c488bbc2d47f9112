"""Fetch an app's source with git: the branch, tag or commit asked, with submodules, nothing else.

Only https is allowed, plus plain http/git to hosts named in configuration (a test's loopback
server); the same allow-list binds submodules. A URL with credentials in it is refused. The build
directory and Dockerfile must resolve inside the checkout, so `..` and symlinks cannot reach the
builder's own files.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from sage_common.redact import url_credentials

from . import procs
from .models import BuildFailure, BuildRequest, Checkout

_SHA_RE = re.compile(r"^[0-9a-f]{7,64}$")
_REF_RE = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/+-]{1,255}$")


def check_url(url: str, insecure_hosts: Sequence[str]) -> str:
    """The URL when its scheme and host are allowed and it holds no credentials (the ECR refuses
    them, an older app or a forged event may still carry them); `source_unreachable` otherwise."""
    problem = url_credentials(url)
    if problem is not None:
        raise BuildFailure(
            "source_unreachable",
            f"source url {problem}: refused; the builder fetches public repositories "
            "without credentials",
        )
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
    opts = ["-c", "protocol.allow=never"]
    for scheme in sorted({"https", urlsplit(url).scheme}):
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


def inside(root: Path, relative: str) -> Path | None:
    """`root/relative` resolved, when it stays within `root` (symlinks followed); else None."""
    if os.path.isabs(relative) or "\x00" in relative:
        return None
    root = root.resolve()
    target = (root / relative).resolve()
    return target if target.is_relative_to(root) else None


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


def check_context(checkout: Checkout) -> None:
    """Refuse a context whose symlinks leave it, when a RUN step bind-mounts it: buildah resolves
    a bind mount's source on the host, following links, so a link to `/etc` would put the
    builder's own files into the build (COPY and ADD stay inside the context anyway)."""
    root = checkout.context
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise BuildFailure(
                    "build_failed",
                    f"a RUN step bind-mounts the build context, and "
                    f"{path.relative_to(root)} links outside it: refused",
                )


class GitFetcher:
    """Fetches a request's source with git. With a `cache` (a bare repository in the layer cache)
    unchanged source is checked out as a worktree with no transfer; trouble there fetches afresh."""

    def __init__(self, insecure_hosts: Sequence[str] = (), timeout: float = 300.0) -> None:
        self.insecure_hosts = list(insecure_hosts)
        self.timeout = timeout
        self._locks: dict[Path, asyncio.Lock] = {}

    async def fetch(
        self,
        request: BuildRequest,
        dest: Path,
        log: Callable[[str], None],
        cache: Path | None = None,
    ) -> str:
        """Fetch into `dest` (which must not exist); return the commit checked out."""
        url = check_url(request.url, self.insecure_hosts)
        for name, ref in (("branch", request.branch), ("tag", request.tag)):
            if ref is not None and not _REF_RE.match(ref):
                raise BuildFailure("source_unreachable", f"not a valid git {name}: {ref!r}")
        if request.commit is not None and not _SHA_RE.match(request.commit):
            raise BuildFailure("source_unreachable", f"not a commit id: {request.commit!r}")
        home = dest.parent / (dest.name + ".home")  # a private HOME beside the checkout
        home.mkdir(parents=True)
        env, opts = _git_env(home), _protocol_config(url)
        commit = None
        try:
            async with asyncio.timeout(self.timeout):
                if cache is not None:
                    commit = await self._cached(Git(cache, env, opts, log), url, request, dest)
                if commit is None:
                    await asyncio.to_thread(_empty_dir, dest)
                    commit = await self._checkout(Git(dest, env, opts, log), url, request)
        except TimeoutError:
            raise BuildFailure(
                "source_unreachable", f"fetching the source took longer than {self.timeout:.0f}s"
            ) from None
        log(f"source at commit {commit}")
        return commit

    async def _cached(self, git: Git, url: str, request: BuildRequest, dest: Path) -> str | None:
        """Fetch into the bare cache and add `dest` as its worktree; None if that failed."""
        cache = git.cwd
        # One ref per source ref (or commit) keeps its last commit reachable: unchanged source
        # then fetches nothing at all.
        if request.commit:
            keep = f"refs/sage/commits/{request.commit}"
        else:
            keep = "refs/sage/" + _ref(request).removeprefix("refs/")
        async with self._locks.setdefault(cache, asyncio.Lock()):
            try:
                await asyncio.to_thread(_init_cache, cache, self.timeout)
                if not (cache / "HEAD").exists():
                    await git("init", "-q", "--bare", ".")
                await git("config", "remote.origin.url", url)
                await git("worktree", "prune")
                if request.commit:
                    if await git.ok("fetch", "-q", "--depth", "1", "origin", request.commit):
                        await git("update-ref", keep, request.commit)
                    else:
                        await git("fetch", "-q", "origin", f"+{_ref(request)}:{keep}")
                    target = request.commit
                else:
                    await git("fetch", "-q", "--depth", "1", "origin", f"+{_ref(request)}:{keep}")
                    target = keep
                await git("worktree", "add", "-q", "--detach", str(dest), target)
            except BuildFailure:
                git.log("the cached clone could not be used; fetching afresh")
                return None
        return await _head(Git(dest, git.env, git.opts, git.log))

    async def _checkout(self, git: Git, url: str, request: BuildRequest) -> str:
        await git("init", "-q", ".")
        await git("remote", "add", "origin", url)
        ref = _ref(request)
        if not request.commit:
            await git("fetch", "-q", "--depth", "1", "origin", ref, what=f"{ref} from {url}")
        elif not await git.ok("fetch", "-q", "--depth", "1", "origin", request.commit):
            # A server that refuses a bare commit: fetch the whole ref, find the commit in it.
            await git("fetch", "-q", "origin", ref, what=f"{ref} from {url}")
        target = request.commit or "FETCH_HEAD"
        await git("checkout", "-q", "--detach", target, what=f"commit {target}")
        return await _head(git)


def _ref(request: BuildRequest) -> str:
    if request.tag:
        return f"refs/tags/{request.tag}"
    if request.branch:
        return f"refs/heads/{request.branch}"
    return "HEAD"


async def _head(git: Git) -> str:
    """The commit checked out in `git`'s tree, once its submodules are fetched."""
    if (git.cwd / ".gitmodules").exists():
        await git("submodule", "update", "--init", "--recursive", "--depth", "1", what="submodules")
    return (await git("rev-parse", "HEAD")).strip()


def _empty_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _init_cache(cache: Path, stale_after: float) -> None:
    """Make the cache directory; drop lock files a killed git left behind."""
    cache.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for lock in cache.rglob("*.lock"):
        with contextlib.suppress(OSError):
            if now - lock.stat().st_mtime > stale_after:
                lock.unlink()


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
