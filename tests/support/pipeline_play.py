"""The builder and the profiler played by a test, and the checks every fault run makes on the
apps it sent through the ECR API (tests/faults/).

`play(...)` answers on the bus as the real services would: each new `app.submitted` with
`build.started` and `build.done` (the builder's part), each new `build.done` with `profile.done`
(the profiler's part); a test plays either part or both, and a real service does the other.
`Apps` submits apps, reads their states and histories, and checks what the `EventTap` caught on
the exchange: each event of each app once (none lost, none duplicated) and an exact history.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiohttp

from sage_common.bus import Bus
from sage_common.events import CloudEvent, make_event
from sage_common.schemas import ArchImage, BuildDone, BuildStarted, ProfileDone
from tests.fixtures.auth import call
from tests.support.bus import eventually
from tests.support.ecr import EventTap, app_spec

OUT = ("app.submitted", "review.requested", "build.started", "build.done", "profile.done")
# Every app's history, in order: (from, to, cause). A fault must not add or repeat a step. The
# one variant: events held back by an outage are retried concurrently, so `build.done` may reach
# the ECR before `build.started`; the ECR then goes from submitted to profiling at once and the
# late `build.started` changes nothing (sage_ecr.states.advance), by design.
HISTORY = [
    (None, "submitted", "submitted"),
    ("submitted", "building", "build.started"),
    ("building", "profiling", "build.done"),
    ("profiling", "in_review", "profile.done"),
]
HISTORY_BUILD_DONE_FIRST = [
    (None, "submitted", "submitted"),
    ("submitted", "profiling", "build.done"),
    ("profiling", "in_review", "profile.done"),
]


def build_done(app_id: str, build_id: str) -> BuildDone:
    image = f"127.0.0.1:5000/{app_id.replace(':', '/')}"
    return BuildDone(
        app_id=app_id,
        build_id=build_id,
        status="success",
        image=image,
        index_digest="sha256:" + "a" * 64,
        images=[
            ArchImage(architecture="linux/amd64", digest="sha256:" + "b" * 64),
            ArchImage(architecture="linux/arm64", digest="sha256:" + "c" * 64, emulated=True),
        ],
        duration_seconds=1.0,
        log_location=f"s3://build-logs/{build_id}.log",
        log_tail=["done"],
    )


def profile_done(app_id: str, build_id: str) -> ProfileDone:
    return ProfileDone(
        app_id=app_id,
        build_id=build_id,
        profile_id=str(uuid.uuid4()),
        status="passed",
        recommended={"memory_bytes": 300_000_000, "cpu_cores": 0.5},
        period={"smallest_safe_seconds": 60},
        concurrency={"copies": 2, "ok": True},
    )


async def play(
    amqp_url: str,
    exchange: str,
    tap: EventTap,
    answering: asyncio.Event,
    *,
    builder: bool = True,
    profiler: bool = True,
    make_build_done: Callable[[str, str], BuildDone] = build_done,
) -> None:
    """Answer what the tap sees, as the builder and/or the profiler would, once `answering`
    is set; runs until cancelled."""
    bus = Bus(amqp_url, exchange=exchange, service="fault-player")
    await bus.connect()
    answered: set[tuple[str, str]] = set()
    # Each answer's events, made once: one the broker lost in a restart is sent again with the
    # same id, as the real workers' outboxes do (the consumers drop a copy by id).
    answers: dict[tuple[str, str], list[CloudEvent]] = {}
    try:
        while True:
            await answering.wait()
            for event in list(tap.seen):
                kind = event.routing_key
                build_id = str(event.data.get("build_id", ""))
                if (kind, build_id) in answered:
                    continue
                app_id = event.subject or ""
                replies: list[Any] = []
                if kind == "app.submitted" and builder:
                    started = BuildStarted(
                        app_id=app_id, build_id=build_id, started_at="2030-01-01T00:00:00Z"
                    )
                    replies = [started, make_build_done(app_id, build_id)]
                    if profiler:  # both played: answer at once, as before the tap sees it
                        replies.append(profile_done(app_id, build_id))
                elif kind == "build.done" and profiler and not builder:
                    replies = [profile_done(app_id, build_id)]
                else:
                    continue
                events = answers.setdefault(
                    (kind, build_id),
                    [make_event("fault-player", data, subject=app_id) for data in replies],
                )
                try:
                    for reply in events:
                        await bus.publish(reply)
                except (ConnectionError, aio_pika.exceptions.AMQPError, TimeoutError):
                    break  # the broker is away (a restart): answer again once it is back
                answered.add((kind, build_id))
            await asyncio.sleep(0.05)
    finally:
        await bus.close()


@dataclass
class Apps:
    """Apps sent through the ECR API at `url` by the user of `token`, watched by `tap`."""

    http: aiohttp.ClientSession
    url: str
    token: str
    tap: EventTap
    ids: list[str]

    async def submit(self, spec: dict[str, Any], *, token: str | None = None) -> str:
        """Submit `spec` (a retry on 503, as a client should; never a 500); return its id."""
        deadline = time.monotonic() + 60
        while True:
            status, body = await call(
                self.http, "POST", f"{self.url}/api/submit", token=token or self.token, json=spec
            )
            if status != 503:
                break
            assert time.monotonic() < deadline, ("503 for a minute", body)
            await asyncio.sleep(0.2)
        assert status == 200, (status, body)
        self.ids.append(body["id"])
        return str(body["id"])

    async def submit_many(self, n: int, namespace: str, **spec: Any) -> list[str]:
        return [await self.submit(app_spec(namespace, f"app{i}", **spec)) for i in range(n)]

    def submitted(self) -> bool:
        seen = {e.subject for e in self.tap.seen if e.routing_key == "app.submitted"}
        return seen >= set(self.ids)

    async def status(self, app_id: str) -> dict[str, Any]:
        path = app_id.replace(":", "/")
        status, body = await call(
            self.http, "GET", f"{self.url}/api/apps/{path}/status", token=self.token
        )
        assert status == 200, (status, body)
        return dict(body)

    async def all_in(self, *states: str) -> bool:
        try:
            found = [await self.status(a) for a in self.ids]
        except (aiohttp.ClientError, AssertionError):
            return False  # not answering yet
        return all(s["state"] in states for s in found)

    def all_events_seen(self) -> bool:
        seen = {(e.subject, e.routing_key) for e in self.tap.seen}
        return all((a, k) in seen for a in self.ids for k in OUT)

    async def until_done(self, within: float = 90) -> None:
        """Every app in review, and every event of it on the exchange (none lost). A failed
        build of one of them fails at once, with its error and log tail."""

        async def in_review() -> bool:
            failed = [
                (d["app_id"], d.get("error_class"), d.get("error"), d.get("log_tail"))
                for e in self.tap.seen
                if e.routing_key == "build.done"
                and (d := e.data)["app_id"] in self.ids
                and d["status"] == "failure"
            ]
            assert not failed, ("a build failed", failed)
            return await self.all_in("in_review")

        await eventually(in_review, within=within, every=0.2)
        await eventually(self.all_events_seen, within=30)

    async def assert_exact(self) -> None:
        """Each event of each app once (the broker may carry one id twice after an outage; the
        consumers drop the copy by id, so distinct ids count), and each history exactly
        HISTORY (or its one variant), every event-caused step naming an event the exchange
        carried."""
        carried: dict[tuple[str, str], set[str]] = {}
        for event in self.tap.seen:
            carried.setdefault((event.subject or "", event.routing_key), set()).add(event.id)
        for app_id in self.ids:
            for kind in OUT:
                assert len(carried.get((app_id, kind), set())) == 1, (app_id, kind, carried)
            history = (await self.status(app_id))["history"]
            steps = [(h["from"], h["to"], h["cause"]) for h in history]
            assert steps in (HISTORY, HISTORY_BUILD_DONE_FIRST), (app_id, steps)
            for step in history[1:]:
                assert step["event_id"] in carried[(app_id, step["cause"])], (app_id, step)
