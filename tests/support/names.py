"""Unique names for what tests make in shared servers (users, namespaces, schemas, queues)."""

from __future__ import annotations

import uuid


def sfx() -> str:
    """A short random suffix: names with it do not collide between tests or runs."""
    return uuid.uuid4().hex[:8]


def uniq(prefix: str) -> str:
    """`prefix` made unique: `prefix-1a2b3c4d`."""
    return f"{prefix}-{sfx()}"
