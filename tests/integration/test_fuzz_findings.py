"""What schemathesis found answered 500, each now a 4xx that says what is wrong.

NUL characters reached Postgres (which refuses them in text) from JSON bodies and path parameters;
`"metadata": null` in a bucket PATCH crashed its validator; a multipart body without a boundary
(or with a broken one) crashed aiohttp's form parser in the ECR's submission and storage's upload;
an introspection form that was not valid text in its charset crashed the auth service's.
"""

from __future__ import annotations

import base64
import uuid

import pytest

from sage_common.errors import NUL_MESSAGE
from sage_ecr.config import Config as EcrConfig
from sage_storage.handlers_objects import MALFORMED_FORM
from tests.fixtures.auth import call
from tests.support.ecr import start_ecr


@pytest.fixture
async def admin(make_user) -> str:
    return await make_user(f"nul-admin-{uuid.uuid4().hex[:8]}", admin=True)


def assert_nul_refused(status, body, loc=None):
    assert status == 422
    assert body["error"] == NUL_MESSAGE
    if loc is not None:
        assert body["errors"][0]["loc"] == loc


async def test_nul_in_a_token_name_is_422(http, auth_url, admin):
    status, body = await call(
        http, "POST", f"{auth_url}/auth/tokens", token=admin, json={"name": "a\x00b"}
    )
    assert_nul_refused(status, body, ["name"])


async def test_nul_in_a_new_users_email_is_422(http, auth_url, admin):
    name = f"nul-{uuid.uuid4().hex[:8]}"
    status, body = await call(
        http,
        "POST",
        f"{auth_url}/auth/users",
        token=admin,
        json={"username": name, "email": "\x00"},
    )
    assert_nul_refused(status, body, ["email"])
    status, _ = await call(http, "GET", f"{auth_url}/auth/users/{name}", token=admin)
    assert status == 404


async def test_nul_in_a_group_description_is_422(http, auth_url, admin):
    status, body = await call(
        http,
        "POST",
        f"{auth_url}/auth/groups",
        token=admin,
        json={"name": f"g-{uuid.uuid4().hex[:8]}", "description": "x\x00"},
    )
    assert_nul_refused(status, body, ["description"])


async def test_nul_in_a_user_update_is_422(http, auth_url, admin, make_user):
    name = f"nul-{uuid.uuid4().hex[:8]}"
    await make_user(name)
    status, body = await call(
        http, "PATCH", f"{auth_url}/auth/users/{name}", token=admin, json={"name": "\x00"}
    )
    assert_nul_refused(status, body, ["name"])


async def test_nul_in_a_path_parameter_is_422_not_500(http, auth_url, admin):
    status, body = await call(http, "GET", f"{auth_url}/auth/users/a%00b", token=admin)
    assert_nul_refused(status, body)


async def test_bucket_patch_with_null_metadata_keeps_the_metadata(http, storage_url, make_user):
    token = await make_user(f"meta-{uuid.uuid4().hex[:8]}")
    status, bucket = await call(
        http,
        "POST",
        f"{storage_url}/api/v1/objects",
        token=token,
        json={"name": "kept", "type": "model", "metadata": {"site": "W08"}},
    )
    assert status == 200
    url = f"{storage_url}/api/v1/objects/{bucket['id']}"
    status, body = await call(
        http, "PATCH", url, token=token, json={"metadata": None, "name": None, "type": None}
    )
    assert status == 200
    assert body["metadata"] == {"site": "W08"} and body["name"] == "kept"
    status, body = await call(
        http, "PATCH", url, token=token, json={"metadata": {"site": "W\x0008"}}
    )
    assert_nul_refused(status, body, ["metadata", "site"])


async def test_bucket_patch_with_null_metadata_is_a_4xx_for_no_token(http, storage_url):
    status, body = await call(
        http, "PATCH", f"{storage_url}/api/v1/objects/0", json={"metadata": None}
    )
    assert 400 <= status < 500 and body["error"]


NO_BOUNDARY = {"Content-Type": "multipart/form-data"}
WITH_BOUNDARY = {"Content-Type": "multipart/form-data; boundary=b"}
# Bodies aiohttp's form parser refuses, each once a 500.
BROKEN_FORMS = {
    "no-boundary": (NO_BOUNDARY, b"name: app"),
    "no-first-boundary": (WITH_BOUNDARY, b"--x\r\n\r\n"),
    "part-header-unparsable": (WITH_BOUNDARY, b"--b\r\nnot a header\r\n\r\nx\r\n--b--\r\n"),
    "nul-in-filename": (
        WITH_BOUNDARY,
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a\x00b"\r\n\r\nx\r\n--b--\r\n',
    ),
}


@pytest.fixture
async def ecr_url(database_url, auth_settings):
    running = await start_ecr(
        EcrConfig(
            database_url=database_url,
            db_schema=f"ecr_findings_{uuid.uuid4().hex[:8]}",
            use_bus=False,
            **auth_settings("ecr-api"),
        )
    )
    yield running.url
    await running.stop()


@pytest.mark.parametrize("form", list(BROKEN_FORMS))
@pytest.mark.parametrize("path", ["/api/submit", "/api/apps/lab/app/1.0.0"])
async def test_a_submission_as_a_broken_multipart_form_is_400(http, ecr_url, admin, path, form):
    headers, data = BROKEN_FORMS[form]
    status, body = await call(http, "POST", ecr_url + path, token=admin, headers=headers, data=data)
    assert status == 400
    assert body["error"] == "the multipart form is malformed (its boundary or a part)"


@pytest.mark.parametrize("form", list(BROKEN_FORMS))
async def test_an_upload_as_a_broken_multipart_form_is_400(http, storage_url, make_user, form):
    token = await make_user(f"form-{uuid.uuid4().hex[:8]}")
    status, bucket = await call(
        http, "POST", f"{storage_url}/api/v1/objects", token=token, json={"name": "forms"}
    )
    assert status == 200
    headers, data = BROKEN_FORMS[form]
    for key in ("file.txt", "dir/"):
        url = f"{storage_url}/api/v1/objects/{bucket['id']}/{key}"
        status, body = await call(http, "PUT", url, token=token, headers=headers, data=data)
        assert status == 400
        assert body["error"] == MALFORMED_FORM


@pytest.mark.parametrize(
    ("ctype", "data"),
    [
        ("application/x-www-form-urlencoded", b"token=\xff\xfe"),
        ("application/x-www-form-urlencoded; charset=bogus", b"token=abc"),
    ],
    ids=["not-utf8", "unknown-charset"],
)
async def test_an_introspection_form_that_is_not_text_is_400(
    http, auth_url, service_secrets, ctype, data
):
    basic = base64.b64encode(f"storage:{service_secrets['storage']}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}", "Content-Type": ctype}
    status, body = await call(
        http, "POST", f"{auth_url}/auth/token_info", headers=headers, data=data
    )
    assert status == 400
    assert body["error"] == "the form is not valid text in its charset (send UTF-8)"
