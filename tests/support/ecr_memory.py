"""The ECR's use cases on its in-memory store, for its unit tests: people, and small factories
that put a version where a test needs it (submitted, built, in review) through the use cases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sage_common.auth import Principal
from sage_common.events import CloudEvent
from sage_common.schemas import BuildDone, BuildStarted, ProfileDone
from sage_ecr import service_builds, service_submit
from sage_ecr.records import App
from sage_ecr.service import Ecr
from sage_ecr.store_memory import MemoryStore
from tests.support.ecr import app_spec


def person(
    username: str, *, approved: bool = True, admin: bool = False, groups: tuple[str, ...] = ()
) -> Principal:
    return Principal(username=username, is_approved=approved, is_admin=admin, groups=list(groups))


ALICE = person("alice")
BOB = person("bob")
REVIEWER = person("rita", groups=("reviewers",))
ADMIN = person("root", admin=True)


class Given:
    """Puts versions in the state a test starts from, with the use cases themselves."""

    def __init__(self, ecr: Ecr, store: MemoryStore) -> None:
        self.ecr, self.store = ecr, store

    async def submitted(
        self, who: Principal = ALICE, ns: str = "lab", name: str = "counter", version: str = "1.0.0"
    ) -> App:
        """A version `who` submitted (built when they are approved, else `registered`)."""
        submission = service_submit.validate_spec(app_spec(ns, name, version))
        await service_submit.submit(self.ecr, who, submission)
        return await self.app(ns, name, version)

    async def app(self, ns: str = "lab", name: str = "counter", version: str = "1.0.0") -> App:
        async with self.store.read() as tx:
            app = await tx.get_app(ns, name, version)
        assert app is not None
        return app

    async def event(self, data: object) -> None:
        """The builder's or profiler's event arriving on the bus."""
        async with self.store.transaction() as tx:
            event_id = str(uuid.uuid4())
            if isinstance(data, BuildStarted):
                await service_builds.on_build_started(tx, data, event_id)
            elif isinstance(data, BuildDone):
                await service_builds.on_build_done(tx, data, event_id)
            else:
                assert isinstance(data, ProfileDone)
                await service_builds.on_profile_done(tx, data, event_id)

    async def built(self, app: App, status: str = "success", **done: object) -> App:
        """The current build of `app` started and finished with `status`."""
        ids = {"app_id": app.ident, "build_id": str(app.build_id)}
        await self.event(BuildStarted(**ids, started_at=datetime.now(UTC)))
        image = f"127.0.0.1:5000/{app.namespace}/{app.name}:{app.version}"
        await self.event(BuildDone(**ids, status=status, image=image, **done))  # type: ignore[arg-type]
        return await self.app(app.namespace, app.name, app.version)

    async def in_review(self, who: Principal = ALICE, **where: str) -> App:
        """A version built and profiled: waiting for a reviewer."""
        app = await self.built(await self.submitted(who, **where))
        ids = {"app_id": app.ident, "build_id": str(app.build_id)}
        await self.event(ProfileDone(**ids, profile_id="p1", status="passed"))
        return await self.app(app.namespace, app.name, app.version)

    def events(self, routing_key: str) -> list[CloudEvent]:
        """The events of that kind that committed transactions queued."""
        return [e for e in self.store.events if e.routing_key == routing_key]
