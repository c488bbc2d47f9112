"""Real servers on loopback for tests and benchmarks of the builder: git, registry, test apps.

`GitServer` is `git daemon` over a directory of bare repositories; `RegistryServer` is Debian's
`docker-registry` with token authentication pointing at an auth service; `scratch_app` writes a
`FROM scratch` app around the static busybox binaries `scripts/setup.sh` puts under var/busybox.
Nothing here is used by the service itself.
"""

# ruff: noqa: S603, S607 - fixed commands (git, docker-registry) of test servers

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[3]
BUSYBOX = {arch: ROOT / "var" / "busybox" / arch / "busybox" for arch in ("amd64", "arm64")}
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}")
        time.sleep(0.05)


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` with a fixed identity and no user config; return its stdout."""
    env = {**os.environ, **_GIT_ENV, "GIT_TERMINAL_PROMPT": "0"}
    done = subprocess.run(
        ["git", "-c", "protocol.file.allow=always", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def scratch_app(
    directory: Path,
    run: str,
    *,
    extra: Mapping[str, str | bytes] | None = None,
    args: tuple[str, ...] = (),
    steps: tuple[str, ...] = (),
) -> None:
    """A `FROM scratch` app: static busybox for the target, `steps`, then `RUN sh -c <run>`."""
    directory.mkdir(parents=True, exist_ok=True)
    for arch, path in BUSYBOX.items():
        if not path.exists():
            raise FileNotFoundError(f"{path.relative_to(ROOT)} is missing: run scripts/setup.sh")
        shutil.copy(path, directory / f"busybox-{arch}")
    lines = ["FROM scratch", "ARG TARGETARCH", *(f"ARG {a}" for a in args)]
    lines += [
        "COPY busybox-${TARGETARCH} /bin/busybox",
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin"]',
        *steps,
        f"RUN {json.dumps(['/bin/busybox', 'sh', '-c', run])}",
        'CMD ["/bin/sh"]',
    ]
    (directory / "Dockerfile").write_text("\n".join(lines) + "\n")
    for name, content in (extra or {}).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@dataclass
class GitServer:
    """`git daemon` on 127.0.0.1 serving the bare repositories under `base`."""

    base: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}.git"

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                f"--base-path={self.base}",
                str(self.base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port, self.proc, "git daemon")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def publish(self, name: str, work: Path, *refs: str) -> None:
        """Push `work`'s refs (all branches and tags when none given) to the served `name`."""
        bare = self.base / f"{name}.git"
        if not bare.exists():
            branch = git(work, "symbolic-ref", "--short", "HEAD")
            git(self.base, "init", "-q", "--bare", "-b", branch, str(bare))
            git(bare, "config", "uploadpack.allowAnySHA1InWant", "true")
        git(work, "push", "-q", "--force", str(bare), *(refs or ("--all",)))
        if not refs:
            git(work, "push", "-q", "--force", "--tags", str(bare))


def commit_all(work: Path, message: str, *, branch: str = "main", tag: str | None = None) -> str:
    """Commit everything in `work` (made a repository if needed); return the commit id."""
    if not (work / ".git").exists():
        git(work, "init", "-q", "-b", branch)
    git(work, "add", "-A")
    git(work, "commit", "-q", "--allow-empty", "-m", message)
    if tag:
        git(work, "tag", "-f", tag)
    return git(work, "rev-parse", "HEAD")


@dataclass
class RegistryServer:
    """Debian's docker-registry on 127.0.0.1, trusting registry tokens from `realm`."""

    root: Path
    realm: str | None
    cert: Path | None
    service: str = "sage-registry"
    issuer: str = "sage-auth"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _config(self) -> Path:
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.root / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.address}",
        ]
        if self.realm is not None and self.cert is not None:
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.realm}",
                f"    service: {self.service}",
                f"    issuer: {self.issuer}",
                f"    rootcertbundle: {self.cert}",
            ]
        path = self.root / "config.yml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "registry.log", "ab")  # handed to the child, closed here
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(self._config())], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        _wait_port(self.port, self.proc, "docker-registry")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


class RegistryReader:
    """Reads manifests and files of images from a registry, as a check from outside the builder."""

    def __init__(self, address: str, token: str | None) -> None:
        self.base = f"http://{address}/v2"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def get(self, path: str, accept: str = "*/*") -> tuple[bytes, str]:
        async with aiohttp.ClientSession() as session:
            headers = {**self.headers, "Accept": accept}
            async with session.get(f"{self.base}/{path}", headers=headers) as resp:
                resp.raise_for_status()
                return await resp.read(), resp.headers.get("Content-Type", "")

    async def manifest(self, repository: str, reference: str) -> tuple[dict, str]:
        accept = ", ".join(
            [
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
            ]
        )
        body, media = await self.get(f"{repository}/manifests/{reference}", accept)
        return json.loads(body), media.split(";")[0]

    async def read_file(self, repository: str, digest: str, path: str) -> bytes | None:
        """The content of `path` in the image `digest`, from its topmost layer holding it."""
        manifest, _ = await self.manifest(repository, digest)
        for layer in reversed(manifest["layers"]):
            blob, _ = await self.get(f"{repository}/blobs/{layer['digest']}")
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
                for member in tar.getmembers():
                    if member.name.lstrip("./") == path.lstrip("/") and member.isfile():
                        handle = tar.extractfile(member)
                        return handle.read() if handle else None
        return None

    async def config(self, repository: str, digest: str) -> dict:
        manifest, _ = await self.manifest(repository, digest)
        body, _ = await self.get(f"{repository}/blobs/{manifest['config']['digest']}")
        return json.loads(body)
