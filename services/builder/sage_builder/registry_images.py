"""Deleting images from the registry: manifests by digest, with a token carrying `delete`.

The registry (distribution) untags every tag pointing at a manifest it deletes; the layers stay
until its garbage collector runs, reachable only by digest and only through the repository's
name, which the catalogue keeps unclaimable until this deletion is confirmed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .registry import RegistryClient, RegistryError

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# A registry path as the catalogue makes them: `namespace/name`, two Docker path components.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"^{_COMPONENT}/{_COMPONENT}$")


@dataclass
class Removal:
    """What one deletion did: digests deleted now, and those the registry no longer held."""

    deleted: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)


class ImageRemover:
    """Deletes manifests of one repository by digest (`DELETE /v2/<name>/manifests/<digest>`)."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client

    async def remove(self, repository: str, digests: list[str]) -> Removal:
        """Delete each of `digests` from `repository`, in order; RegistryError if one fails."""
        if not REPOSITORY.match(repository):
            raise ValueError(f"{repository!r} is not a registry repository path")
        bad = [d for d in digests if not DIGEST.match(d)]
        if bad:
            raise ValueError(f"not image digests: {bad}")
        done = Removal()
        if not digests:
            return done
        async with self.client.session() as session:
            headers = await self.client.authorization(session, repository, "delete")
            for digest in digests:
                url = f"{self.client.base}/v2/{repository}/manifests/{digest}"
                async with session.delete(url, headers=headers) as resp:
                    if resp.status in (200, 202):
                        done.deleted.append(digest)
                    elif resp.status == 404:
                        done.absent.append(digest)
                    else:
                        raise RegistryError(
                            f"the registry answered {resp.status} deleting {repository}@{digest}"
                        )
        return done
