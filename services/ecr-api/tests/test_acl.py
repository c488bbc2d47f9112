"""The permission rules: implications, inheritance from the namespace, public access, admins."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sage_common.auth import Principal
from sage_ecr.acl import Grant, Permission, is_public, on_namespace, on_repository, reads_everything

P = Permission


def user(name: str, *groups: str, admin: bool = False) -> Principal:
    return Principal(username=name, groups=list(groups), is_admin=admin, is_approved=True)


def grant(kind: str, who: str, permission: Permission) -> Grant:
    return Grant(granteeType=kind, grantee=who, permission=permission)


def test_full_control_implies_everything_and_write_implies_read():
    assert on_repository(user("o"), [], [grant("USER", "o", P.FULL_CONTROL)]) == frozenset(P)
    assert on_repository(user("w"), [], [grant("USER", "w", P.WRITE)]) == {P.WRITE, P.READ}
    assert on_repository(user("a"), [], [grant("USER", "a", P.WRITE_ACP)]) == {
        P.WRITE_ACP,
        P.READ_ACP,
    }


def test_group_grants_reach_members_only():
    grants = [grant("GROUP", "lab", P.READ)]
    assert on_repository(user("m", "lab"), [], grants) == {P.READ}
    assert on_repository(user("x", "other"), [], grants) == frozenset()


def test_namespace_grants_apply_to_its_repositories_but_not_its_public_flag():
    ns = [grant("USER", "team", P.WRITE), grant("GROUP", "AllUsers", P.READ)]
    assert on_repository(user("team"), ns, []) == {P.WRITE, P.READ}
    assert on_repository(None, ns, []) == frozenset()
    assert on_namespace(None, ns) == {P.READ}


def test_public_repository_is_readable_by_anyone_including_anonymous():
    repo = [grant("GROUP", "AllUsers", P.READ)]
    assert on_repository(None, [], repo) == {P.READ}
    assert on_repository(user("s"), [], repo) == {P.READ}
    assert is_public(repo)


def test_admins_pass_every_check_and_reviewers_read_everything():
    assert on_repository(user("root", admin=True), [], []) == frozenset(P)
    assert reads_everything(user("r", "reviewers"), "reviewers")
    assert not reads_everything(user("s"), "reviewers")
    assert not reads_everything(None, "reviewers")


def test_all_users_can_only_be_given_read():
    with pytest.raises(ValidationError, match="AllUsers"):
        grant("GROUP", "AllUsers", P.WRITE)
