"""What requests carry besides the app description: query strings and small JSON bodies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from .acl import ALL_USERS, Grant, GranteeType, Permission
from .spec import Architecture
from .spectypes import Name
from .states import State

MAX_PAGE = 1000


def _flag(value: Any) -> Any:
    """SAGE flags: `true`, `True`, `1`, `yes` or present with no value count as set."""
    if isinstance(value, str):
        return value.strip().lower() in ("", "true", "1", "yes", "on")
    return value


Flag = Annotated[bool, BeforeValidator(_flag)]


class ListQuery(BaseModel):
    """`GET /api/apps` query: paging, filters and full-text search."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = MAX_PAGE
    continue_: str | None = Field(default=None, alias="continue", max_length=1024)
    namespace: Name | None = None
    owner: str | None = Field(default=None, max_length=256, description="a username, or true: mine")
    public: Flag = False
    nopublic: Flag = False
    shared: Flag = False
    state: State | None = None
    published: Flag = False
    architecture: Architecture | None = None
    gpu: Literal["required", "optional", "none", "true", "false"] | None = None
    q: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _published_is_a_state(self) -> ListQuery:
        if self.published and self.state not in (None, State.PUBLISHED):
            raise ValueError("published=true lists published apps only; drop state or published")
        return self


class RepositoryQuery(BaseModel):
    """`GET /api/repositories` query: SAGE's filters, and `view=permissions`."""

    model_config = ConfigDict(extra="ignore")

    namespace: Name | None = None
    owner: str | None = Field(default=None, max_length=256, description="a username, or true: mine")
    public: Flag = False
    nopublic: Flag = False
    shared: Flag = False
    view: str | None = Field(default=None, max_length=64, description="permissions: add grants")


def _strict_flag(value: Any) -> Any:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "1", "yes"):
            return True
        if word in ("false", "0", "no"):
            return False
    return value


class FrozenQuery(BaseModel):
    """`PUT /api/apps/{ns}/{name}/{version}?frozen=true|false` (SAGE's way to (un)freeze)."""

    model_config = ConfigDict(extra="ignore")

    frozen: Annotated[bool, BeforeValidator(_strict_flag)]


class BuildNumber(BaseModel):
    build_number: Annotated[int, Field(ge=1, le=1_000_000)]


class NamespaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Name


class PermissionChange(BaseModel):
    """SAGE's `PUT /api/permissions/...` body; a bare `delete` removes all but the owner's."""

    model_config = ConfigDict(extra="forbid")

    operation: Literal["add", "delete"]
    granteeType: GranteeType | None = None
    grantee: str | None = Field(default=None, min_length=1, max_length=256)
    permission: Permission | None = None

    def grant(self) -> Grant:
        """The grant an `add` names (complete: the validator checked)."""
        assert self.granteeType and self.grantee and self.permission
        return Grant(
            grantee_type=self.granteeType, grantee=self.grantee, permission=self.permission
        )

    @model_validator(mode="after")
    def _add_is_complete(self) -> PermissionChange:
        if self.operation == "add" and None in (self.granteeType, self.grantee, self.permission):
            raise ValueError("add needs granteeType, grantee and permission")
        if (
            self.operation == "add"
            and self.granteeType == "GROUP"
            and self.grantee == ALL_USERS
            and self.permission != Permission.READ
        ):
            raise ValueError("AllUsers can only be given READ")
        return self


class ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=16_384)


class RegistryAccessQuery(BaseModel):
    """What the auth service asks before it signs a registry token."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(default="", max_length=256, description="empty for an anonymous pull")
    repository: str = Field(min_length=1, max_length=512)
    groups: str = Field(default="", max_length=4096, description="comma-separated")
    admin: Flag = False


class SubmitFields(BaseModel):
    """What `POST /api/submit` may carry beside the description (query or form fields): where
    the app comes from when the file does not say, and `force` to replace a version."""

    model_config = ConfigDict(extra="ignore")

    force: Flag = False
    namespace: str | None = Field(default=None, max_length=256)
    name: str | None = Field(default=None, max_length=256)
    version: str | None = Field(default=None, max_length=256)
    url: str | None = Field(default=None, max_length=2048)
    branch: str | None = Field(default=None, max_length=256)
    tag: str | None = Field(default=None, max_length=256)

    def given(self) -> dict[str, str]:
        """The description's fields the request names (empty ones count as not given)."""
        return {k: v for k, v in self.model_dump(exclude={"force"}).items() if v}
