"""The pipeline state machine driven by real events on the real broker: the happy path, failures,
duplicates, reordering, stale builds, rebuilds, review and publication."""

from __future__ import annotations

import uuid

import pytest

from sage_common.events import CloudEvent, make_event
from sage_common.schemas import ArchImage, BuildDone, BuildStarted, ProfileDone
from tests.fixtures.auth import call
from tests.support.bus import eventually
from tests.support.ecr import app_spec, handled
from tests.support.names import sfx

OUT = ("app.submitted", "review.requested", "app.published", "app.rejected", "build.cancel")


class Version:
    """One submitted app version and the ways a test pushes it through the pipeline."""

    def __init__(self, http, ecr, tap, builder, token, ns, name, version="1.0.0"):
        self.http, self.ecr, self.tap, self.builder, self.token = http, ecr, tap, builder, token
        self.ns, self.name, self.version = ns, name, version
        self.app_id = f"{ns}/{name}:{version}"
        self.path = f"{ns}/{name}/{version}"
        self.build_id = ""

    async def submit(self) -> None:
        status, body = await call(
            self.http,
            "POST",
            f"{self.ecr.url}/api/submit",
            token=self.token,
            json=app_spec(self.ns, self.name, self.version),
        )
        assert status == 200, body
        self.build_id = (await self.submitted(1)).data["build_id"]

    async def submitted(self, build_number: int) -> CloudEvent:
        """The app.submitted for the `build_number`-th build (as the builder receives it)."""

        def match(e: CloudEvent) -> bool:
            return e.type.endswith("app.submitted.v1") and e.subject == self.app_id

        await eventually(lambda: self.tap.count(match) >= build_number)
        return [e for e in self.tap.seen if match(e)][build_number - 1]

    def event(self, data) -> CloudEvent:
        return make_event("test-builder", data, subject=self.app_id)

    async def send(self, event: CloudEvent) -> CloudEvent:
        await self.builder.publish(event)
        return event

    def started(self, build_id: str | None = None) -> CloudEvent:
        return self.event(
            BuildStarted(
                app_id=self.app_id,
                build_id=build_id or self.build_id,
                started_at="2030-01-01T00:00:00Z",
            )
        )

    def done(self, status: str = "success", build_id: str | None = None) -> CloudEvent:
        return self.event(
            BuildDone(
                app_id=self.app_id,
                build_id=build_id or self.build_id,
                status=status,
                image=f"127.0.0.1:5000/{self.ns}/{self.name}:{self.version}",
                index_digest="sha256:" + "a" * 64,
                images=[
                    ArchImage(architecture="linux/amd64", digest="sha256:" + "b" * 64),
                    ArchImage(
                        architecture="linux/arm64", digest="sha256:" + "c" * 64, emulated=True
                    ),
                ],
                duration_seconds=12.5,
                log_location=f"s3://build-logs/{self.build_id}.log",
                log_tail=["Step 1/2", "done"]
                if status == "success"
                else ["Step 1/2", "error: boom"],
                error_class=None if status == "success" else "build_failed",
                error=None if status == "success" else "the Dockerfile's RUN step exited 1",
            )
        )

    def profiled(self, status: str = "passed") -> CloudEvent:
        return self.event(
            ProfileDone(
                app_id=self.app_id,
                build_id=self.build_id,
                profile_id=str(uuid.uuid4()),
                status=status,
                recommended={"memory_bytes": 300_000_000, "cpu_cores": 0.5},
                period={"smallest_safe_seconds": 60},
                concurrency={"copies": 2, "ok": True},
                reason=None if status == "passed" else "exit code 3, expected 0",
            )
        )

    async def status(self) -> dict:
        status, body = await call(
            self.http, "GET", f"{self.ecr.url}/api/apps/{self.path}/status", token=self.token
        )
        assert status == 200, body
        return body

    async def reaches(self, state: str, *, transitions: int | None = None) -> dict:
        """Wait for `state` (and, when given, that many history rows); return the status."""

        async def there() -> bool:
            body = await self.status()
            return body["state"] == state and (
                transitions is None or len(body["history"]) == transitions
            )

        await eventually(there)
        return await self.status()


@pytest.fixture
def version(http, ecr, tap, builder, people):
    def make(name: str | None = None, v: str = "1.0.0") -> Version:
        return Version(http, ecr, tap, builder, people["owner"], f"lab{sfx()}", name or "app", v)

    return make


async def test_submission_emits_app_submitted_through_the_outbox(version):
    app = version("counter")
    await app.submit()
    event = await app.submitted(1)
    assert event.source == "ecr-api" and event.subject == app.app_id
    assert event.data["source"]["architectures"] == ["linux/amd64", "linux/arm64"]
    assert event.data["testing"]["command"] == ["/bin/app", "--selftest"]
    assert event.data["hardware"]["gpu"] == "optional"
    assert event.data["submitter"].startswith("owner-")
    uuid.UUID(event.data["build_id"])


async def test_the_whole_pipeline_to_publication(version, http, ecr, tap, people):
    app = version("detector")
    await app.submit()
    started = await app.send(app.started())
    await app.reaches("building")
    done = await app.send(app.done())
    await app.reaches("profiling")
    status, build = await call(http, "GET", f"{ecr.url}/api/builds/{app.path}", token=app.token)
    assert status == 200 and build["result"] == "SUCCESS" and build["build_number"] == 1
    profiled = await app.send(app.profiled())
    body = await app.reaches("in_review")
    assert [(h["from"], h["to"], h["cause"], h["event_id"]) for h in body["history"]] == [
        (None, "submitted", "submitted", None),
        ("submitted", "building", "build.started", started.id),
        ("building", "profiling", "build.done", done.id),
        ("profiling", "in_review", "profile.done", profiled.id),
    ]
    requested = await tap.get(
        lambda e: e.type.endswith("review.requested.v1") and e.subject == app.app_id
    )
    assert requested.data["build"]["index_digest"] == "sha256:" + "a" * 64
    assert requested.data["profile"]["recommended"]["cpu_cores"] == 0.5

    status, report = await call(
        http, "GET", f"{ecr.url}/api/apps/{app.path}/profile", token=app.token
    )
    assert status == 200 and report["status"] == "passed" and report["concurrency"]["copies"] == 2
    status, logs = await call(http, "GET", f"{ecr.url}/api/apps/{app.path}/logs", token=app.token)
    assert logs["log_location"].startswith("s3://build-logs/") and logs["log_tail"][-1] == "done"

    status, published = await call(
        http,
        "POST",
        f"{ecr.url}/api/apps/{app.path}/review",
        token=people["reviewer"],
        json={"decision": "approve", "comment": "fine"},
    )
    assert status == 200, published
    assert published["state"] == "published" and published["frozen"] is True
    assert published["image"]["pinned"] == f"127.0.0.1:5000/{app.ns}/{app.name}@sha256:{'a' * 64}"
    assert published["image"]["digests"]["linux/arm64"] == "sha256:" + "c" * 64
    assert published["profile"]["recommended"]["memory_bytes"] == 300_000_000
    assert published["review"]["reviewer"] == people["reviewer_name"]
    event = await tap.get(lambda e: e.type.endswith("app.published.v1") and e.subject == app.app_id)
    assert event.data["index_digest"] == "sha256:" + "a" * 64 and event.data["comment"] == "fine"
    assert len(event.data["images"]) == 2

    # frozen: no rebuild, no delete by the owner; the scheduler finds it
    assert (await call(http, "POST", f"{ecr.url}/api/builds/{app.path}", token=app.token))[0] == 409
    assert (await call(http, "DELETE", f"{ecr.url}/api/apps/{app.path}", token=app.token))[0] == 403
    _, page = await call(
        http,
        "GET",
        f"{ecr.url}/api/apps",
        token=people["reviewer"],
        params={"published": "true", "namespace": app.ns},
    )
    assert [a["id"] for a in page["data"]] == [app.app_id]
    assert (await call(http, "DELETE", f"{ecr.url}/api/apps/{app.path}", token=people["admin"]))[
        0
    ] == 200


async def test_duplicates_change_nothing(version):
    app = version()
    await app.submit()
    started = app.started()
    for _ in range(3):
        await app.send(started)  # the same event redelivered
    await app.send(app.started())  # the same fact under another event id
    await app.reaches("building")
    done = app.done()
    for event in (done, done, app.done()):
        await app.send(event)
    await app.reaches("profiling")
    await app.send(app.profiled("failed"))
    body = await app.reaches("profile_failed", transitions=4)
    assert [h["to"] for h in body["history"]] == [
        "submitted",
        "building",
        "profiling",
        "profile_failed",
    ]
    late = [app.profiled("passed"), app.started(), app.done("failure")]
    for event in late:  # a second verdict on the same build is not a new fact, nor the rest
        await app.send(event)
    await handled(app.ecr, started, done, *late)
    assert (await app.status())["history"] == body["history"]


async def test_build_done_before_build_started_and_profile_before_build(version):
    app = version()
    await app.submit()
    done = await app.send(app.done())
    await app.reaches("profiling")
    late = await app.send(app.started())  # late: building is already behind
    # A second version: its profile overtakes its build result and waits for it.
    other = version()
    await other.submit()
    await other.send(other.profiled())
    await other.send(other.started())
    await other.reaches("building")
    await other.send(other.done())
    body = await other.reaches("in_review")
    assert [h["to"] for h in body["history"]] == ["submitted", "building", "profiling", "in_review"]
    await handled(app.ecr, late)
    first = await app.status()
    assert [(h["to"], h["event_id"]) for h in first["history"]] == [
        ("submitted", None),
        ("profiling", done.id),
    ]


async def test_a_rebuild_gets_a_new_build_id_and_old_build_events_are_ignored(
    version, http, ecr, tap
):
    app = version()
    await app.submit()
    old = app.build_id
    await app.send(app.started())
    await app.reaches("building")
    status, body = await call(http, "POST", f"{ecr.url}/api/builds/{app.path}", token=app.token)
    assert (status, body) == (200, {"build_number": 2})
    resubmitted = await app.submitted(2)
    assert resubmitted.data["build_id"] != old
    cancel = await tap.get(lambda e: e.type.endswith("build.cancel.v1") and e.subject == app.app_id)
    assert cancel.data["build_id"] == old
    app.build_id = resubmitted.data["build_id"]
    stale = await app.send(app.done("failure", build_id=old))  # the superseded build, late
    await app.send(app.started())
    body = await app.reaches("building", transitions=4)
    await handled(ecr, stale)
    body = await app.status()
    assert [(h["to"], h["build_number"]) for h in body["history"]] == [
        ("submitted", 1),
        ("building", 1),
        ("submitted", 2),
        ("building", 2),
    ]
    _, build = await call(http, "GET", f"{ecr.url}/api/builds/{app.path}", token=app.token)
    assert build["build_number"] == 2 and build["result"] is None and build["building"] is True


async def test_a_failed_build_reports_its_log_and_can_be_rebuilt(version, http, ecr):
    app = version()
    await app.submit()
    await app.send(app.done("failure"))
    await app.reaches("build_failed")
    _, build = await call(http, "GET", f"{ecr.url}/api/builds/{app.path}", token=app.token)
    assert build["result"] == "FAILURE" and build["error_class"] == "build_failed"
    _, logs = await call(http, "GET", f"{ecr.url}/api/apps/{app.path}/logs", token=app.token)
    assert logs["log_tail"][-1] == "error: boom" and logs["error"]
    assert (await call(http, "GET", f"{ecr.url}/api/apps/{app.path}/profile", token=app.token))[
        0
    ] == 404
    status, body = await call(http, "POST", f"{ecr.url}/api/builds/{app.path}", token=app.token)
    assert (status, body) == (200, {"build_number": 2})
    await app.reaches("submitted")


async def test_review_is_for_reviewers_and_only_in_review(version, http, ecr, tap, people):
    app = version()
    await app.submit()
    review = f"{ecr.url}/api/apps/{app.path}/review"
    reject = {"decision": "reject", "comment": "needs a smaller model"}
    assert (await call(http, "POST", review, token=people["reviewer"], json=reject))[0] == 409
    await app.send(app.done())
    await app.send(app.profiled())
    await app.reaches("in_review")
    assert (await call(http, "POST", review, token=app.token, json=reject))[0] == 403
    assert (await call(http, "POST", review, token=people["stranger"], json=reject))[0] == 404
    assert (await call(http, "POST", review, json=reject))[0] == 404
    assert (await call(http, "POST", review, token=people["reviewer"], json={"decision": "maybe"}))[
        0
    ] == 422
    status, body = await call(http, "POST", review, token=people["reviewer"], json=reject)
    assert status == 200 and body["state"] == "rejected" and body["frozen"] is False
    event = await tap.get(lambda e: e.type.endswith("app.rejected.v1") and e.subject == app.app_id)
    assert event.data["comment"] == "needs a smaller model"
    assert event.data["reviewer"] == people["reviewer_name"]
    # rejected is not frozen: the owner may build it again
    assert (await call(http, "POST", f"{ecr.url}/api/builds/{app.path}", token=app.token))[0] == 200


async def test_an_unreadable_event_does_not_block_the_queue(version):
    app = version()
    await app.submit()
    broken = app.done()
    broken.data.pop("status")
    await app.send(broken)
    await app.send(app.started())
    await app.reaches("building")
