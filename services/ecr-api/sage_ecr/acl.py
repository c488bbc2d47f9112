"""Who may do what to a namespace or a repository: grants, what they imply, and the checks.

Rules (DESIGN.md, "Identity and access"): `FULL_CONTROL` implies all; `WRITE` implies `READ`;
`WRITE_ACP` implies `READ_ACP`; the group `AllUsers` gets `READ` only; admins pass every check.
A grant on a namespace applies to every repository in it, except `AllUsers` (a public namespace
lists its repositories' names, it does not make them public). App versions take their repository's.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sage_common.auth import Principal

ALL_USERS = "AllUsers"


class Permission(StrEnum):
    READ = "READ"
    WRITE = "WRITE"
    READ_ACP = "READ_ACP"
    WRITE_ACP = "WRITE_ACP"
    FULL_CONTROL = "FULL_CONTROL"


IMPLIES: dict[Permission, frozenset[Permission]] = {
    Permission.FULL_CONTROL: frozenset(Permission),
    Permission.WRITE: frozenset({Permission.WRITE, Permission.READ}),
    Permission.READ: frozenset({Permission.READ}),
    Permission.WRITE_ACP: frozenset({Permission.WRITE_ACP, Permission.READ_ACP}),
    Permission.READ_ACP: frozenset({Permission.READ_ACP}),
}
# The stored grants that give a permission (for SQL): READ is given by READ, WRITE, FULL_CONTROL.
GIVEN_BY: dict[Permission, list[str]] = {
    p: sorted(q.value for q, implied in IMPLIES.items() if p in implied) for p in Permission
}

GranteeType = Literal["USER", "GROUP"]


class Grant(BaseModel):
    """One row of an access control list, in SAGE's wire names."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    grantee_type: GranteeType = Field(alias="granteeType")
    grantee: str = Field(min_length=1, max_length=256)
    permission: Permission

    @model_validator(mode="after")
    def _public_is_read_only(self) -> Grant:
        if (
            self.grantee_type == "GROUP"
            and self.grantee == ALL_USERS
            and self.permission != Permission.READ
        ):
            raise ValueError("AllUsers can only be given READ")
        return self


def reads_everything(who: Principal | None, reviewers_group: str) -> bool:
    """Admins, reviewers and service accounts see every app (to review, build, profile, run)."""
    return who is not None and (who.is_admin or who.is_service or reviewers_group in who.groups)


def is_reviewer(who: Principal | None, reviewers_group: str) -> bool:
    return who is not None and (who.is_admin or reviewers_group in who.groups)


def applies_to(grant: Grant, who: Principal | None) -> bool:
    """Whether `grant` names the caller: directly, by one of their groups, or as everyone."""
    if grant.grantee_type == "GROUP" and grant.grantee == ALL_USERS:
        return True
    if who is None:
        return False
    if grant.grantee_type == "USER":
        return grant.grantee == who.username
    return grant.grantee in who.groups


def _granted(
    who: Principal | None, grants: Iterable[Grant], *, skip_public: bool = False
) -> set[Permission]:
    granted: set[Permission] = set()
    for grant in grants:
        if skip_public and grant.grantee_type == "GROUP" and grant.grantee == ALL_USERS:
            continue
        if applies_to(grant, who):
            granted |= IMPLIES[grant.permission]
    return granted


def on_namespace(who: Principal | None, grants: Iterable[Grant]) -> frozenset[Permission]:
    """Everything the caller may do on a namespace."""
    if who is not None and who.is_admin:
        return frozenset(Permission)
    return frozenset(_granted(who, grants))


def on_repository(
    who: Principal | None, namespace_grants: Iterable[Grant], repository_grants: Iterable[Grant]
) -> frozenset[Permission]:
    """Everything the caller may do on a repository (and so on each of its versions)."""
    if who is not None and who.is_admin:
        return frozenset(Permission)
    inherited = _granted(who, namespace_grants, skip_public=True)
    return frozenset(inherited | _granted(who, repository_grants))


def is_public(grants: Iterable[Grant]) -> bool:
    return any(g.grantee_type == "GROUP" and g.grantee == ALL_USERS for g in grants)
