"""Deleting a version asks the builder to delete its images, and holds its names until it has.

The ECR runs on a real broker with no builder: this test plays the builder, hearing `app.deleted`
and answering `app.images_deleted`, so the held state can be looked at for as long as it lasts.
"""

from __future__ import annotations

import uuid

from sage_common.events import CloudEvent, make_event
from sage_common.schemas import AppImagesDeleted, ArchImage, BuildDone
from tests.fixtures.auth import call
from tests.support.bus import eventually
from tests.support.ecr import app_spec, handled
from tests.support.names import sfx

OUT = ("app.submitted", "app.deleted")


async def submit(http, ecr, tap, token: str, ns: str, name: str, version: str) -> str:
    """Submit a version; its first build id (from the `app.submitted` the builder would get)."""
    status, body = await call(
        http, "POST", f"{ecr.url}/api/submit", token=token, json=app_spec(ns, name, version)
    )
    assert status == 200, body
    event = await tap.get(
        lambda e: e.routing_key == "app.submitted" and e.subject == f"{ns}/{name}:{version}"
    )
    return str(event.data["build_id"])


def digest(c: str) -> str:
    return "sha256:" + c * 64


async def test_deleted_app_names_are_held_until_the_builder_deleted_its_images(
    http, ecr, tap, builder, make_user
):
    s = sfx()
    owner, stranger = await make_user(f"owner-{s}"), await make_user(f"stranger-{s}")
    ns, app_id = f"gc{s}", f"gc{s}/counter:1.0.0"
    build_id = await submit(http, ecr, tap, owner, ns, "counter", "1.0.0")
    await builder.publish(
        make_event(
            "test-builder",
            BuildDone(
                app_id=app_id,
                build_id=build_id,
                status="success",
                image=f"127.0.0.1:5000/{ns}/counter:1.0.0",
                index_digest=digest("a"),
                images=[ArchImage(architecture="linux/amd64", digest=digest("b"))],
            ),
            subject=app_id,
        )
    )

    async def built() -> bool:
        status, body = await call(
            http, "GET", f"{ecr.url}/api/apps/{ns}/counter/1.0.0/status", token=owner
        )
        return status == 200 and body["state"] != "building" and body["state"] != "submitted"

    await eventually(built)

    base = f"{ecr.url}/api"
    assert (await call(http, "DELETE", f"{base}/apps/{ns}/counter/1.0.0", token=owner))[0] == 200
    deleted = await tap.get(lambda e: e.routing_key == "app.deleted" and e.subject == app_id)
    assert deleted.data["repository"] == f"{ns}/counter"
    assert deleted.data["builds"] == [
        {
            "build_id": build_id,
            "image": f"127.0.0.1:5000/{ns}/counter:1.0.0",
            "index_digest": digest("a"),
            "images": [{"architecture": "linux/amd64", "digest": digest("b"), "emulated": False}],
        }
    ]

    # The same version cannot come back while its old images may still be served.
    status, body = await call(
        http, "POST", f"{base}/submit", token=owner, json=app_spec(ns, "counter", "1.0.0")
    )
    assert status == 409, body
    assert "still being removed" in body["detail"]

    # The empty repository and namespace may go, but their names stay held, for everyone.
    assert (await call(http, "DELETE", f"{base}/repositories/{ns}/counter", token=owner))[0] == 200
    assert (await call(http, "DELETE", f"{base}/namespaces/{ns}", token=owner))[0] == 200
    for who in (stranger, owner):
        status, _ = await call(http, "PUT", f"{base}/namespaces", token=who, json={"id": ns})
        assert status == 409
        status, _ = await call(
            http, "POST", f"{base}/submit", token=who, json=app_spec(ns, "counter", "2.0.0")
        )
        assert status == 409

    # A confirmation naming another deletion, or the right deletion under another app id,
    # releases nothing.
    wrong = [
        make_event("test-builder", data, subject=data.app_id)
        for data in (
            AppImagesDeleted(app_id=app_id, deletion_id=str(uuid.uuid4())),
            AppImagesDeleted(app_id=f"{ns}/other:1.0.0", deletion_id=deleted.id),
        )
    ]
    for event in wrong:
        await builder.publish(event)
    await handled(ecr, *wrong)
    status, _ = await call(http, "PUT", f"{base}/namespaces", token=stranger, json={"id": ns})
    assert status == 409

    # The builder's answer frees the names: the first to claim them gets them.
    answer = AppImagesDeleted(
        app_id=app_id, deletion_id=deleted.id, deleted=[digest("a"), digest("b")]
    )
    await builder.publish(make_event("test-builder", answer, subject=app_id))

    async def claimed() -> bool:
        status, _ = await call(http, "PUT", f"{base}/namespaces", token=stranger, json={"id": ns})
        return status == 200

    await eventually(claimed)


async def test_deleting_one_version_holds_only_that_version(http, ecr, tap, make_user):
    s = sfx()
    owner = await make_user(f"owner-{s}")
    ns = f"gc{s}"
    await submit(http, ecr, tap, owner, ns, "counter", "1.0.0")
    base = f"{ecr.url}/api"
    assert (await call(http, "DELETE", f"{base}/apps/{ns}/counter/1.0.0", token=owner))[0] == 200
    deleted: CloudEvent = await tap.get(
        lambda e: e.routing_key == "app.deleted" and e.subject == f"{ns}/counter:1.0.0"
    )
    assert deleted.data["builds"][0]["index_digest"] is None  # never built: nothing pushed
    status, body = await call(
        http, "POST", f"{base}/submit", token=owner, json=app_spec(ns, "counter", "1.1.0")
    )
    assert status == 200, body
    status, _ = await call(
        http, "POST", f"{base}/submit", token=owner, json=app_spec(ns, "counter", "1.0.0")
    )
    assert status == 409
