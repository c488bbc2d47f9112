"""Submitting an app version: read the description as SAGE authors write it, store it, start it.

Every problem of a description is listed in one 422; an unapproved user's version waits as
`registered`, as in SAGE, until an approved user builds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from sage_common.auth import Principal
from sage_common.errors import Conflict, Forbidden, Unauthorized, Unprocessable, validation_errors

from . import service_access as access
from . import service_builds, service_images, views
from .acl import Permission
from .service import Ecr, search_text
from .spec import AppSpec, cross_check
from .spec_sage import put_back, read_sage
from .spectypes import version_key
from .states import State


@dataclass
class Submission:
    """A validated description, the fields it had that the model does not know, and warnings."""

    spec: AppSpec
    extras: dict[tuple[str | int, ...], Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def stored(self) -> dict[str, Any]:
        """The description as stored: the model's fields, then the unknown ones as written."""
        doc = self.spec.model_dump(mode="json", exclude={"namespace", "name", "version"})
        for key in SAGE_COMMAND_FIELDS:
            if doc.get(key) is None:
                doc.pop(key, None)
        return put_back(doc, self.extras)


SAGE_COMMAND_FIELDS = ("arguments", "baseCommand", "depends_on")
# Where to give a required field that can come from the request instead of the file.
_HINTS = {
    "namespace": "write namespace: in the file, or send it with the request "
    "(?namespace=, `sage ecr app submit --namespace`)",
    "source": "write source: with url: in the file, or send url= with the request",
    "source.url": "write source.url in the file, or send it with the request "
    "(?url=, `sage ecr app submit --url`)",
    "version": 'write version: (for example "1.0"), or submit to /api/apps/{ns}/{name}/{version}',
}


def _hinted(problem: dict[str, Any]) -> dict[str, Any]:
    hint = _HINTS.get(".".join(problem["loc"])) if problem.get("type") == "missing" else None
    return {**problem, "msg": f"{problem['msg']}: {hint}"} if hint else problem


def _refuse(problems: list[dict[str, Any]]) -> Unprocessable:
    said = "; ".join(f"{'.'.join(p['loc']) or 'description'}: {p['msg']}" for p in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return Unprocessable(f"the app description is not valid: {said}{more}", errors=problems)


def validate_spec(data: Any, given: dict[str, str] | None = None) -> Submission:
    """The description read as SAGE authors write it, the request's fields (URL path, query,
    form: namespace, name, version, url, branch, tag) filled in; 422 listing every problem."""
    if not isinstance(data, dict):
        raise Unprocessable(
            "the app description must be a mapping of fields (name:, version:, source: ...)"
        )
    reading = read_sage(data, given)
    problems = []
    if reading.data.get("namespace") is None:
        problems.append(_hinted({"loc": ["namespace"], "msg": "Field required", "type": "missing"}))
    try:
        spec = AppSpec.model_validate(reading.data)
    except ValidationError as exc:
        raise _refuse(problems + [_hinted(p) for p in validation_errors(exc)]) from None
    problems += cross_check(spec)
    if problems:
        raise _refuse(problems)
    return Submission(spec, reading.extras, reading.warnings)


def _with_warnings(document: str, warnings: list[str]) -> str:
    """The stored app's JSON text, with the submission's warnings added when there are any."""
    return f'{document[:-1]}, "warnings": {json.dumps(warnings)}}}' if warnings else document


async def submit(
    ecr: Ecr, who: Principal | None, submission: Submission, *, force: bool = False
) -> str:
    """Store a version (the namespace goes to its first submitter) and, for an approved user,
    queue `app.submitted`; an unapproved user's version stays `registered`, as in SAGE.

    An existing version is a 409, unless `force` and it is not frozen: then it is replaced."""
    if who is None:
        raise Unauthorized("this needs a token: send 'Authorization: sage <token>'")
    spec = submission.spec
    assert spec.namespace is not None
    ns, name = spec.namespace, spec.name
    ident = views.app_id(ns, name, spec.version)
    async with ecr.store.transaction() as tx:
        await service_images.require_claimable(tx, ns, name, spec.version)
        if await tx.create_namespace(ns, who.username):
            await tx.create_repository(ns, name, who.username)
        elif await tx.get_repository(ns, name) is None:
            granted = await access.on_namespace(tx, who, ecr.policy, ns)
            if Permission.WRITE not in granted:
                raise Forbidden(
                    f"namespace {ns} belongs to someone else: you may not add apps to it"
                )
            await tx.create_repository(ns, name, who.username)
        else:
            granted = await access.on_repository(tx, who, ecr.policy, ns, name)
            if Permission.WRITE not in granted:
                raise Forbidden(f"you may not submit versions of {ns}/{name}")
        values: dict[str, Any] = {
            "spec": submission.stored(),
            "architectures": list(spec.source.architectures),
            "gpu": spec.hardware.gpu,
            "search": search_text(spec),
        }
        approved = who.is_approved or who.is_admin
        existing = await tx.get_app(ns, name, spec.version, for_update=True)
        if existing is not None:
            if existing.frozen:
                raise Conflict(f"App {ident} already exists and is frozen: submit a new version")
            if not force:
                raise Conflict(
                    f"App {ident} already exists but is not frozen. "
                    "Use query force=true to overwrite."
                )
            await tx.replace_spec(existing.id, **values)
            app = await tx.get_app_by_id(existing.id, for_update=True)
            cause = "resubmitted"
        else:
            app = await tx.insert_app(
                namespace=ns,
                name=name,
                version=spec.version,
                version_key=version_key(spec.version),
                owner=who.username,
                state=(State.SUBMITTED if approved else State.REGISTERED).value,
                **values,
            )
            cause = "submitted"
        if app is None:  # another request stored it first
            raise Conflict(f"App {ident} already exists: submit again with force=true to replace")
        if approved:
            await service_builds.start_build(tx, app, who.username, cause)
        else:
            await service_builds.register(tx, app, who.username, cause)
        return _with_warnings(await tx.app_document(app.id), submission.warnings)
