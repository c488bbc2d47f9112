"""Who may do what with a bucket (DESIGN.md, "Identity and access"): what each permission
implies, and the answer when one is lacking. A caller who may not read the bucket gets 404, so
private buckets stay invisible; one who may gets 403, or 401 when anonymous (a token might help).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

from sage_common.auth import Principal
from sage_common.errors import Forbidden, NotFound, Unauthorized

Permission = Literal["READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL"]
PERMISSIONS: tuple[Permission, ...] = get_args(Permission)
ALL_USERS = "AllUsers"

_IMPLIES: dict[str, frozenset[str]] = {
    "READ": frozenset({"READ"}),
    "WRITE": frozenset({"WRITE", "READ"}),
    "READ_ACP": frozenset({"READ_ACP"}),
    "WRITE_ACP": frozenset({"WRITE_ACP", "READ_ACP"}),
    "FULL_CONTROL": frozenset(PERMISSIONS),
}


def effective(granted: Iterable[str]) -> frozenset[str]:
    """Every permission that the granted ones amount to."""
    return frozenset().union(*(_IMPLIES.get(permission, ()) for permission in granted))


def grantee_groups(who: Principal | None) -> list[str]:
    """The groups whose grants apply to the caller: theirs, and AllUsers for everyone."""
    return [ALL_USERS, *(who.groups if who else [])]


def check(who: Principal | None, owner: str, granted: Iterable[str], needed: Permission) -> None:
    """Pass, or raise 404 (may not read the bucket), 401 (anonymous) or 403 (reads, may not)."""
    if who is not None and (who.is_admin or who.username == owner):
        return
    have = effective(granted)
    if needed in have:
        return
    if "READ" not in have:
        raise NotFound("no such bucket")
    if who is None:
        raise Unauthorized("this needs a token: send 'Authorization: sage <token>'")
    raise Forbidden(f"this needs {needed} permission on the bucket")
