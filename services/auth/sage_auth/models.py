"""What the auth service stores and answers: users, groups, tokens, and the bodies it accepts."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NAME_PATTERN = r"^[a-z][a-z0-9_.-]{1,63}$"
NAME_RE = re.compile(NAME_PATTERN)
SCOPE_RE = r"^[a-z][a-z0-9_.:*-]{0,63}$"

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]  # of a user or a group
Scope = Annotated[str, StringConstraints(pattern=SCOPE_RE)]
Text = Annotated[str, StringConstraints(max_length=256)]


def valid_name(name: str) -> bool:
    """Usernames and group names: lowercase, start with a letter, 2 to 64 characters."""
    return bool(NAME_RE.match(name))


class User(BaseModel):
    username: str
    name: str = ""
    email: str = ""
    is_admin: bool = False
    is_approved: bool = False
    created_at: datetime
    groups: list[str] = Field(default_factory=list)
    last_login_at: datetime | None = None


class SageUser(User):
    """A user as SAGE's auth service (waggle-auth-app) shows one, beside our own fields: the
    edge scheduler reads `username`, `email`, `name`, `is_staff`, `is_superuser`."""

    url: str
    is_staff: bool
    is_superuser: bool
    ssh_public_keys: str = ""
    date_joined: datetime
    last_login: datetime | None = None

    @classmethod
    def of(cls, user: User, url: str) -> SageUser:
        return cls(
            **user.model_dump(),
            url=url,
            is_staff=user.is_admin,
            is_superuser=user.is_admin,
            date_joined=user.created_at,
            last_login=user.last_login_at,
        )


class Group(BaseModel):
    name: str
    description: str = ""
    created_at: datetime
    members: list[str] = Field(default_factory=list)


class Token(BaseModel):
    """A token as listed: never the token itself, which exists only in the creation answer."""

    id: UUID
    name: str
    username: str
    scopes: list[str]
    expires_at: datetime
    created_at: datetime
    last_used_at: datetime | None = None
    revoked: bool = False


class NewToken(BaseModel):
    id: UUID
    name: str
    token: str
    scopes: list[str]
    expires_at: datetime
    created_at: datetime


class Whoami(BaseModel):
    username: str
    name: str = ""
    email: str = ""
    is_admin: bool
    is_approved: bool
    groups: list[str]
    scopes: list[str]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateToken(_Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    scopes: list[Scope] | None = Field(default=None, max_length=32)
    expires_in_days: int | None = Field(default=None, ge=1)


class SageTokenInfoOut(BaseModel):
    """SAGE's introspection answer (waggle-auth-app's `token_info/`), with our groups beside."""

    active: bool = True
    scope: str
    client_id: str = "sage"
    username: str
    exp: int
    groups: list[str] = Field(default_factory=list)


class CreateUser(_Body):
    username: Name
    name: Text = ""
    email: Text = ""
    is_admin: bool = False
    is_approved: bool = False


class UpdateUser(_Body):
    name: Text | None = None
    email: Text | None = None
    is_admin: bool | None = None
    is_approved: bool | None = None


class CreateGroup(_Body):
    name: Name
    description: Text = ""
