"""Dockerfile rules, checked on a real parser (dockerfile-parse) before any step runs.

Build steps run without network (docs/adr/0010-build-sandbox.md), so what would fetch or mount
something from outside the build is refused here, with a reason a person can act on:
- `ADD` from anything the context cannot prove local: URLs, `git@host:repo`, and sources built
  from variables whose values are unknown here (ENV of a base image, ARGs without a value);
- `RUN --mount` with `from=` another stage or image (buildah CVE-2024-1753: a link in that stage
  made buildah mount the builder's own files);
- the same inside `ONBUILD`, where a later build would run them;
- images from registries that are not configured.
What remains is a plan: the external images the build reads (pulled before the sandbox starts)
and whether a RUN step bind-mounts the context (whose links are then checked).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from dockerfile_parse import DockerfileParser
from dockerfile_parse.util import WordSplitter, extract_key_values

from .models import BuildFailure

SCRATCH = "scratch"
# buildah's automatic platform ARGs: platform strings, never a URL.
_PLATFORM_ARGS = {
    f"{side}{what}": "linux/amd64"
    for side in ("TARGET", "BUILD")
    for what in ("PLATFORM", "OS", "ARCH", "VARIANT")
}
_VAR_RE = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+?])[^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))"
)
_REMOTE_RE = re.compile(r"://|^[^/]*@[^/]*:|^git@", re.IGNORECASE)
_FLAG_RE = re.compile(r'^\s*--([A-Za-z-]+)(?:=("(?:[^"\\]|\\.)*"|\S*))?')


@dataclass(frozen=True)
class DockerfilePlan:
    """What a Dockerfile that passed the rules needs from outside its context."""

    images: tuple[str, ...] = ()  # external images (FROM, COPY --from), as written, expanded
    binds_context: bool = False  # a RUN step bind-mounts the build context


def refuse(reason: str) -> BuildFailure:
    return BuildFailure("build_failed", f"Dockerfile refused: {reason}")


def expand(text: str, values: Mapping[str, str | None]) -> str | None:
    """`text` with `$NAME`/`${NAME}` replaced; None when a name's value is not known here."""
    unknown = False

    def sub(match: re.Match[str]) -> str:
        nonlocal unknown
        name = match.group(1) or match.group(3)
        value = values.get(name)
        if value is None or match.group(2):  # modifiers (`:-`, `:+`) are not evaluated here
            unknown = True
            return ""
        return value

    result = _VAR_RE.sub(sub, text)
    return None if unknown or "$" in result else result


def registry_of(image: str) -> str:
    """The registry host of an image reference (`docker.io` for short names)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _flags(value: str) -> tuple[list[tuple[str, str]], str]:
    """Leading `--name=value` flags of an instruction's value, and the rest of it."""
    flags = []
    while match := _FLAG_RE.match(value):
        raw = match.group(2) or ""
        if raw.startswith('"'):
            raw = json.loads(raw)
        flags.append((match.group(1).lower(), raw))
        value = value[match.end() :]
    return flags, value.strip()


def _words(rest: str) -> list[str]:
    """The arguments of COPY/ADD in JSON or shell form."""
    if rest.startswith("["):
        with contextlib.suppress(ValueError):
            parsed = json.loads(rest)
            if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
                return parsed
        raise refuse(f"malformed JSON arguments: {rest[:80]!r}")
    return [str(w) for w in WordSplitter(rest).split(dequote=True)]


def _mount_options(text: str) -> dict[str, str]:
    parts = (part.partition("=") for part in text.split(","))
    return {key.strip().lower(): value.strip() for key, _, value in parts}


@dataclass
class _Walk:
    """The state of one pass over the instructions."""

    build_args: Mapping[str, str]
    allowed: Sequence[str]
    global_args: dict[str, str | None] = field(default_factory=dict)
    scope: dict[str, str | None] = field(default_factory=dict)
    stages: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    binds_context: bool = False
    in_stage: bool = False

    def image(self, ref: str, what: str) -> None:
        ref = ref.strip()
        if ref.lower() == SCRATCH:
            return
        registry = registry_of(ref)
        if registry not in self.allowed:
            raise refuse(f"{what} {ref!r} is from {registry}, which builds here may not use")
        if ref not in self.images:
            self.images.append(ref)

    def arg(self, value: str) -> None:
        """Record ARG values: given build args, defaults, global or platform values; else unknown.

        A stage's `ARG NAME` without a value may take one from the base image's ENV, unknown here.
        """
        target = self.scope if self.in_stage else self.global_args
        for word in WordSplitter(value).split(dequote=False):
            name, has_default, raw = str(word).partition("=")
            if name in self.build_args:
                target[name] = self.build_args[name]
            elif has_default:
                default = str(WordSplitter(raw).dequote())
                target[name] = expand(default, {**self.global_args, **self.scope})
            elif self.in_stage:
                target[name] = self.global_args.get(name, _PLATFORM_ARGS.get(name))
            else:
                target[name] = _PLATFORM_ARGS.get(name, "")

    def env(self, value: str) -> None:
        for name, raw in extract_key_values(False, {}, {}, value):
            self.scope[name] = expand(raw, self.scope)

    def from_(self, value: str) -> None:
        flags, rest = _flags(value)
        words = rest.split()
        if not words:
            raise refuse("FROM without an image")
        image = expand(words[0], {**_PLATFORM_ARGS, **self.global_args})
        if image is None:
            raise refuse(f"the image of FROM {words[0]!r} is not known before the build")
        if image.lower() not in self.stages:
            self.image(image, "base image")
        if len(words) >= 3 and words[1].lower() == "as":
            self.stages.append(words[2].lower())
        else:
            self.stages.append(f"#{len(self.stages)}")
        self.in_stage, self.scope = True, {}

    def copy(self, value: str, onbuild: bool) -> None:
        flags, _rest = _flags(value)
        for name, source in flags:
            if name != "from":
                continue
            ref = expand(source, {**self.global_args, **self.scope})
            if ref is None:
                raise refuse(f"COPY --from={source} is not known before the build")
            if ref.lower() in self.stages or ref.isdigit():
                if onbuild:
                    raise refuse("ONBUILD COPY --from another stage")
                continue
            if onbuild:
                raise refuse(f"ONBUILD COPY --from={ref}: later builds would pull it unchecked")
            self.image(ref, "COPY --from image")

    def add(self, value: str, prefix: str) -> None:
        _flags_, rest = _flags(value)
        words = _words(rest)
        if len(words) < 2:
            raise refuse(f"{prefix}ADD needs a source and a destination")
        for source in words[:-1]:
            if not self._local(source):
                raise refuse(
                    f"{prefix}ADD {source!r}: ADD takes files from the build context only "
                    "(builds here have no network; download in a RUN step is not possible either)"
                )

    def _local(self, source: str) -> bool:
        if "$" in source:
            if ":" in source or "@" in source:
                return False
            expanded = expand(source, {**self.global_args, **self.scope})
            if expanded is None:
                return False
            source = expanded
        return not _REMOTE_RE.search(source)

    def run(self, value: str, prefix: str) -> None:
        flags, _rest = _flags(value)
        for name, option in flags:
            if name == "mount":
                mount = _mount_options(option)
                kind = mount.get("type", "bind")
                if "from" in mount:
                    raise refuse(
                        f"{prefix}RUN --mount=type={kind},from={mount['from']}: mounts from another "
                        "stage or image are refused (buildah CVE-2024-1753)"
                    )
                if kind == "bind":
                    self.binds_context = True
            elif name == "network" and option != "none":
                raise refuse(f"{prefix}RUN --network={option}: build steps have no network")
            elif name == "security":
                raise refuse(f"{prefix}RUN --security={option} is refused")

    def instruction(self, name: str, value: str, onbuild: bool = False) -> None:
        prefix = "ONBUILD " if onbuild else ""
        if name == "ADD":
            self.add(value, prefix)
        elif name == "COPY":
            self.copy(value, onbuild)
        elif name == "RUN":
            self.run(value, prefix)
        elif onbuild and name in ("ONBUILD", "FROM"):
            raise refuse(f"ONBUILD {name} is not allowed")


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8", "replace")))
    for item in parser.structure:
        name = str(item["instruction"]).upper()
        if name != "COMMENT":
            yield name, str(item["value"])


def plan(
    text: str, build_args: Mapping[str, str], allowed_registries: Sequence[str]
) -> DockerfilePlan:
    """Check `text` against the rules above; its plan, or `BuildFailure("build_failed")`."""
    walk = _Walk(build_args, allowed_registries)
    seen_from = False
    for name, value in _instructions(text):
        if name == "ARG":
            walk.arg(value)
        elif name == "FROM":
            walk.from_(value)
            seen_from = True
        elif not seen_from:
            raise refuse(f"{name} before the first FROM")
        elif name == "ENV":
            walk.env(value)
        elif name == "ONBUILD":
            inner, _, rest = value.strip().partition(" ")
            walk.instruction(inner.upper(), rest, onbuild=True)
        else:
            walk.instruction(name, value)
    if not seen_from:
        raise refuse("no FROM instruction")
    return DockerfilePlan(tuple(walk.images), walk.binds_context)


def check_triggers(
    triggers: Sequence[tuple[str, str]],
    build_args: Mapping[str, str],
    allowed_registries: Sequence[str],
) -> None:
    """Refuse base images whose ONBUILD triggers break the rules (they run in this build)."""
    for image, trigger in triggers:
        try:
            plan(f"FROM scratch\nONBUILD {trigger}\n", build_args, allowed_registries)
        except BuildFailure as failure:
            reason = failure.message.removeprefix("Dockerfile refused: ")
            raise refuse(f"base image {image} carries {reason}") from None
