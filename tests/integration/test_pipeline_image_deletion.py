"""Deleting apps removes their images from the registry before anyone else may take their names.

A scientist builds two versions of an app for real (one for amd64 and arm64, one for amd64), a
reviewer publishes the first; an administrator deletes the published one, the scientist the other,
then the empty repository and namespace. The builder deletes every manifest the builds pushed
(by digest, with its own registry token), and only then may a stranger claim the same names: the
stranger's own build of `namespace/name:1.0.0` is served, the old digests are not, and a redelivered
`app.deleted` leaves the stranger's image alone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import aiohttp
import pytest
from prometheus_client import REGISTRY

from sage_common.bus import Bus
from sage_common.events import CloudEvent
from tests.fixtures.pipeline import Pipeline, app_yaml
from tests.fixtures.registry import registry_token
from tests.support.bus import eventually

pytestmark = pytest.mark.slow

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
TESTING = {"command": ["/bin/sh", "-c", "cat /etc/built"], "timeout": "1m", "repetitions": 1}


@dataclass
class Deleted:
    ns: str
    repository: str
    owner: str
    admin: str
    digests: dict[str, list[str]]  # version -> index digest, then its manifests
    deletions: dict[str, CloudEvent] = field(default_factory=dict)  # version -> app.deleted
    answers: dict[str, CloudEvent] = field(default_factory=dict)  # -> app.images_deleted
    steps: dict[str, int] = field(default_factory=dict)  # what each deletion call answered


async def manifest(pipeline: Pipeline, token: str, repository: str, ref: str) -> tuple[int, str]:
    """(status, Docker-Content-Digest) of `GET /v2/<repository>/manifests/<ref>` with `token`."""
    url = f"http://{pipeline.registry.address}/v2/{repository}/manifests/{ref}"
    headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, resp.headers.get("Docker-Content-Digest", "")


async def pull_token(pipeline: Pipeline, user_token: str, repository: str) -> str:
    """A registry token for pulling `repository`, asked for with a user's token."""
    async with aiohttp.ClientSession() as http:
        return await registry_token(
            http,
            pipeline.auth.url,
            f"repository:{repository}:pull",
            {"Authorization": f"sage {user_token}"},
        )


async def built_digests(pipeline: Pipeline, app_id: str, builds: int = 1) -> list[str]:
    """The index and manifest digests of the `builds`-th `build.done` of `app_id`."""

    def match(e: CloudEvent) -> bool:
        return e.routing_key == "build.done" and e.subject == app_id

    await eventually(lambda: pipeline.events.count(match) >= builds, within=30)
    done = [e for e in pipeline.events.seen if match(e)][builds - 1]
    assert done.data["status"] == "success", done.data
    return [done.data["index_digest"], *(i["digest"] for i in done.data["images"])]


@pytest.fixture(scope="module")
async def deleted(pipeline: Pipeline, make_user) -> Deleted:
    """Two versions built and one published, then every version, the repository and the
    namespace deleted, waiting for the builder's `app.images_deleted` of each version."""
    s = uuid.uuid4().hex[:8]
    owner = await make_user(f"scientist-{s}")
    reviewer = await make_user(f"reviewer-{s}", groups=["reviewers"])
    admin = await make_user(f"admin-{s}", admin=True)
    url, _ = pipeline.publish_source(f"gc-{s}", "mkdir -p /etc && echo old > /etc/built")
    ns = f"gc{s}"
    digests = {}
    for version, archs in (("1.0.0", ("linux/amd64", "linux/arm64")), ("1.1.0", ("linux/amd64",))):
        spec = app_yaml(ns, "counter", url, version=version, architectures=archs, testing=TESTING)
        result = await pipeline.submit(spec, "--wait", "--interval", "0.2", token=owner)
        assert result.code == 0, result.out + result.err
        digests[version] = await built_digests(pipeline, f"{ns}/counter:{version}")
    approve = await pipeline.sage(
        "ecr", "review", "approve", f"{ns}/counter:1.0.0", "--comment", "ok", token=reviewer
    )
    assert approve.code == 0, approve.err
    gone = Deleted(ns, f"{ns}/counter", owner, admin, digests)
    token = await pull_token(pipeline, admin, gone.repository)
    for version in digests:
        assert (await manifest(pipeline, token, gone.repository, version)) == (
            200,
            digests[version][0],
        )

    # A published version is frozen: its owner may not delete it, an administrator may.
    path = f"/api/apps/{ns}/counter"
    gone.steps["owner deletes 1.0.0"] = (
        await pipeline.api("DELETE", f"{path}/1.0.0", token=owner)
    )[0]
    gone.steps["admin deletes 1.0.0"] = (
        await pipeline.api("DELETE", f"{path}/1.0.0", token=admin)
    )[0]
    gone.steps["owner deletes 1.1.0"] = (
        await pipeline.api("DELETE", f"{path}/1.1.0", token=owner)
    )[0]
    for version in digests:
        app_id = f"{ns}/counter:{version}"
        gone.deletions[version] = await pipeline.events.get(
            lambda e, a=app_id: e.routing_key == "app.deleted" and e.subject == a
        )
        gone.answers[version] = await pipeline.events.get(
            lambda e, a=app_id: e.routing_key == "app.images_deleted" and e.subject == a,
            within=60,
        )
    gone.steps["owner deletes the repository"] = (
        await pipeline.api("DELETE", f"/api/repositories/{ns}/counter", token=owner)
    )[0]
    gone.steps["owner deletes the namespace"] = (
        await pipeline.api("DELETE", f"/api/namespaces/{ns}", token=owner)
    )[0]
    return gone


async def test_versions_repository_and_namespace_are_deleted_in_that_order(deleted: Deleted):
    assert deleted.steps == {
        "owner deletes 1.0.0": 403,
        "admin deletes 1.0.0": 200,
        "owner deletes 1.1.0": 200,
        "owner deletes the repository": 200,
        "owner deletes the namespace": 200,
    }


async def test_builder_reports_every_pushed_manifest_deleted(deleted: Deleted):
    """A manifest two versions share (an identical rebuild) is kept while the other version
    lives, and deleted with the last of them."""
    everything, removed = set(), set()
    for version, digests in deleted.digests.items():
        answer = deleted.answers[version].data
        assert answer["deletion_id"] == deleted.deletions[version].id
        assert set(answer["deleted"]) | set(answer["kept"]) == set(digests), answer
        assert answer["absent"] == []
        everything |= set(digests)
        removed |= set(answer["deleted"])
    assert removed == everything
    assert len(deleted.digests["1.0.0"]) == 3  # the index and one manifest per architecture


async def test_deleted_manifests_are_gone_from_the_registry(pipeline: Pipeline, deleted: Deleted):
    token = await pull_token(pipeline, deleted.admin, deleted.repository)
    for version, digests in deleted.digests.items():
        assert (await manifest(pipeline, token, deleted.repository, version))[0] == 404
        for digest in digests:
            assert (await manifest(pipeline, token, deleted.repository, digest))[0] == 404


async def test_a_stranger_claiming_the_names_cannot_pull_the_old_images(
    pipeline: Pipeline, deleted: Deleted, make_user
):
    stranger = await make_user(f"stranger-{uuid.uuid4().hex[:8]}")
    url, _ = pipeline.publish_source(
        f"gc-new-{uuid.uuid4().hex[:8]}", "mkdir -p /etc && echo new > /etc/built"
    )
    spec = app_yaml(deleted.ns, "counter", url, testing=TESTING)
    answers: list[tuple[int, dict]] = []

    async def claimed() -> bool:
        # 409 until the ECR has heard every `app.images_deleted` (the test heard them already).
        answers.append(await pipeline.api("POST", "/api/submit", token=stranger, json=spec))
        return answers[-1][0] != 409

    await eventually(claimed, within=30, every=0.5)
    status, body = answers[-1]
    assert status == 200, body
    assert body["owner"].startswith("stranger-")
    app_id = f"{deleted.repository}:1.0.0"
    await pipeline.reaches(app_id, "in_review", token=stranger, within=300)
    new_index = (await built_digests(pipeline, app_id, builds=2))[0]

    token = await pull_token(pipeline, stranger, deleted.repository)
    assert (await manifest(pipeline, token, deleted.repository, "1.0.0")) == (200, new_index)
    old = [d for digests in deleted.digests.values() for d in digests]
    assert new_index not in old
    for digest in old:
        assert (await manifest(pipeline, token, deleted.repository, digest))[0] == 404

    # (c) The old deletion delivered again is recognised and does nothing: the new image stays.
    consumer = pipeline.builder.app_deleted_queue
    labels = {"service": "builder", "consumer": consumer}

    def duplicates() -> float:
        return REGISTRY.get_sample_value("sage_events_duplicate_total", labels) or 0.0

    before = duplicates()
    bus = Bus(  # as its producer, the ECR API: no other broker user may publish app.deleted
        pipeline.ecr.config.amqp_url.get_secret_value(),
        exchange=pipeline.exchange,
        service="test-redelivery",
    )
    await bus.connect()
    try:
        await bus.publish(deleted.deletions["1.0.0"])
    finally:
        await bus.close()
    await eventually(lambda: duplicates() == before + 1, within=30)
    assert (await manifest(pipeline, token, deleted.repository, "1.0.0")) == (200, new_index)
    answers = pipeline.events.count(
        lambda e: (
            e.routing_key == "app.images_deleted"
            and e.data.get("deletion_id") == deleted.deletions["1.0.0"].id
        )
    )
    assert answers == 1
