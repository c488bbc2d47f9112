"""The builder's side of deleting an app, against a real broker and Postgres.

A deletion the registry cannot take (an address nothing listens on) is retried with back-off, then
dead-lettered, unconfirmed; a build whose `app.submitted` arrives after its version's
`app.deleted` is cancelled before it fetches anything, so it pushes nothing.
"""

from __future__ import annotations

import json
import uuid

import aio_pika
import pytest

from sage_common.bus import Bus
from sage_common.events import make_event
from sage_common.schemas import AppDeleted, AppSource, AppSubmitted, ArchImage, DeletedBuild
from sage_common.web import POOL
from tests.support.builder import delete_queues, running_builder
from tests.support.bus import delete_topology, eventually
from tests.support.ecr import EventTap
from tests.support.ports import free_port

pytestmark = pytest.mark.slow


async def test_unreachable_registry_retries_then_dead_letters_the_deletion(
    builder_config, tmp_path, amqp_url
):
    suffix = uuid.uuid4().hex[:8]
    config = builder_config(tmp_path / "builder", suffix).model_copy(
        update={"registry": f"127.0.0.1:{free_port()}", "deletion_retry_seconds": [0.2, 0.4]}
    )
    app_id, build_id = f"gc{suffix}/counter:1.0.0", str(uuid.uuid4())
    data = AppDeleted(
        app_id=app_id,
        repository=f"gc{suffix}/counter",
        requested_by="alice",
        builds=[
            DeletedBuild(
                build_id=build_id,
                index_digest="sha256:" + "a" * 64,
                images=[ArchImage(architecture="linux/amd64", digest="sha256:" + "b" * 64)],
            )
        ],
    )
    event = make_event("tests", data, subject=app_id)
    try:
        async with running_builder(config) as app:
            bus = Bus(amqp_url, exchange=config.exchange, service="tests")
            await bus.connect()
            try:
                await bus.publish(event)
            finally:
                await bus.close()
            dead = await dead_letter(amqp_url, f"{config.app_deleted_queue}.dlq")
            async with app[POOL].acquire() as conn:
                handled = await conn.fetchval(
                    "SELECT count(*) FROM processed_events WHERE event_id = $1",
                    uuid.UUID(event.id),
                )
                cancel = await conn.fetchval(
                    "SELECT reason FROM cancels WHERE build_id = $1", build_id
                )
    finally:
        await delete_queues(amqp_url, config)
        await delete_topology(amqp_url, exchanges=[config.exchange])
    assert json.loads(dead.body)["id"] == event.id
    assert dead.headers["x-attempts"] == 3  # the first try and two retries
    assert "unreachable" in str(dead.headers["x-error"])
    assert handled == 0  # not recorded: a redrive from the dead-letter queue tries it again
    assert cancel == "app deleted by alice"  # the build is fenced all the same


async def dead_letter(amqp_url: str, queue_name: str) -> aio_pika.abc.AbstractIncomingMessage:
    """The first message that lands in `queue_name`."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        found: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def arrived() -> bool:
            message = await queue.get(no_ack=True, fail=False)
            if message is not None:
                found.append(message)
            return bool(found)

        await eventually(arrived, within=30, every=0.2)
        return found[0]


async def test_a_build_submitted_after_its_deletion_is_cancelled_unbuilt(
    builder_config, tmp_path, amqp_url
):
    suffix = uuid.uuid4().hex[:8]
    config = builder_config(tmp_path / "builder", suffix)
    app_id, build_id = f"gc{suffix}/counter:1.0.0", str(uuid.uuid4())
    deleted = make_event(
        "tests",
        AppDeleted(
            app_id=app_id,
            repository=f"gc{suffix}/counter",
            requested_by="alice",
            builds=[DeletedBuild(build_id=build_id)],
        ),
        subject=app_id,
    )
    submitted = make_event(
        "tests",
        AppSubmitted(
            app_id=app_id,
            build_id=build_id,
            source=AppSource(url="http://127.0.0.1:9/never-fetched.git"),
            submitter="alice",
        ),
        subject=app_id,
    )
    answers = ("app.images_deleted", "build.done")
    try:
        async with (
            running_builder(config),
            EventTap(amqp_url, config.exchange, answers) as tap,
        ):
            bus = Bus(amqp_url, exchange=config.exchange, service="tests")
            await bus.connect()
            try:
                await bus.publish(deleted)
                confirmed = await tap.get(lambda e: e.routing_key == "app.images_deleted")
                await bus.publish(submitted)
                done = await tap.get(lambda e: e.routing_key == "build.done", within=30)
            finally:
                await bus.close()
    finally:
        await delete_queues(amqp_url, config)
        await delete_topology(amqp_url, exchanges=[config.exchange])
    assert confirmed.data["deletion_id"] == deleted.id
    assert confirmed.data["deleted"] == [] and confirmed.data["kept"] == []
    assert done.data["build_id"] == build_id
    assert done.data["status"] == "failure" and done.data["error_class"] == "cancelled"
    assert "app deleted by alice" in done.data["error"]
    assert done.data["index_digest"] is None and done.data["images"] == []
