"""A consumer's main queue: a quorum queue whose delivery limit the broker enforces, and the
migration of a queue of the same name declared otherwise (a classic queue of an earlier version).

RabbitMQ refuses to redeclare a queue with other arguments (PRECONDITION_FAILED), so a consumer
that finds one moves its messages out of the way first, on a connection of its own:

1. a holding queue `<name>.migrate` is bound like the old queue, so nothing published meanwhile
   is missed;
2. the old queue's messages are moved into it (each copy confirmed before the original is acked),
   then the old queue is deleted once empty;
3. the new queue is declared and bound, the holding queue unbound, and its messages moved into
   the new queue; the holding queue is deleted.

A message may be copied twice on the way (it was in both queues); consumers drop the second by
its event id. `docs/operations.md` describes the upgrade.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustQueue,
    HeadersType,
)
from aiormq.exceptions import ChannelClosed, ChannelPreconditionFailed

from .broker import Bus

log = logging.getLogger(__name__)

# Deliveries of one message before the broker dead-letters it: each delivery whose consumer dies
# (or gives the message back) counts; an outage the consumer waits out in place does not.
DEFAULT_DELIVERY_LIMIT = 5


def main_queue_arguments(dlq: str, delivery_limit: int, requeue: str) -> dict[str, Any]:
    """Quorum, bounded redelivery, and at-least-once dead-lettering into `dlq` through the
    consumer's own `requeue` exchange (its broker user may not write to the default one)."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": requeue,
        "x-dead-letter-routing-key": dlq,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


async def declare_main_queue(
    bus: Bus,
    channel: AbstractRobustChannel,
    name: str,
    dlq: str,
    routing_keys: Sequence[str],
    delivery_limit: int,
    requeue: str,
) -> AbstractRobustQueue:
    """Declare (migrating first if needed) and bind the consumer's main queue on `channel`: to
    the events exchange by `routing_keys`, and to its `requeue` exchange by its own name."""
    arguments = main_queue_arguments(dlq, delivery_limit, requeue)
    connection = await aio_pika.connect(bus.amqp_url, timeout=bus.connect_timeout)
    async with connection:
        probe = await connection.channel()
        try:
            await probe.declare_queue(name, durable=True, arguments=arguments)
        except ChannelPreconditionFailed:
            await _migrate(connection, bus.exchange_name, requeue, name, arguments, routing_keys)
    exchange = await bus.declare_exchange(channel)
    queue = await channel.declare_queue(name, durable=True, arguments=arguments)
    await queue.bind(requeue, name)
    for key in routing_keys:
        await queue.bind(exchange, key)
    return queue


async def _migrate(
    connection: aio_pika.abc.AbstractConnection,
    exchange_name: str,
    requeue_name: str,
    name: str,
    arguments: dict[str, Any],
    routing_keys: Sequence[str],
) -> None:
    holding_name = f"{name}.migrate"
    log.warning(
        "queue declared with other arguments; migrating it",
        extra={"queue": name, "holding_queue": holding_name},
    )
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(
        exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
    )
    requeue = await channel.get_exchange(requeue_name)
    holding = await channel.declare_queue(holding_name, durable=True)
    await holding.bind(requeue, holding_name)
    for key in routing_keys:
        await holding.bind(exchange, key)
    moved = 0
    while True:
        old = await channel.declare_queue(name, passive=True)
        moved += await _move(requeue, old, holding_name)
        try:
            await old.delete(if_unused=False, if_empty=True)
            break
        except ChannelClosed:  # a message arrived after the last move: move again
            channel = await connection.channel(publisher_confirms=True)
    await channel.close()
    # A channel that used the old queue must not publish to the new one of the same name (the
    # broker's channel keeps the old queue's state: RabbitMQ 3.10 closes the connection).
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(exchange_name)
    requeue = await channel.get_exchange(requeue_name)
    queue = await channel.declare_queue(name, durable=True, arguments=arguments)
    await queue.bind(requeue, name)
    for key in routing_keys:
        await queue.bind(exchange, key)
    holding = await channel.declare_queue(holding_name, durable=True)
    for key in routing_keys:
        await holding.unbind(exchange, key)
    moved_back = await _move(requeue, holding, name)
    await channel.queue_delete(holding_name)
    log.warning(
        "queue migrated",
        extra={"queue": name, "moved": moved, "moved_back": moved_back, **arguments},
    )


def copy_message(message: AbstractIncomingMessage, headers: HeadersType) -> aio_pika.Message:
    """`message` to publish again, persistent, with its id, producer and type, and `headers`."""
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        app_id=message.app_id,
    )


async def _move(requeue: AbstractExchange, source: AbstractQueue, target: str) -> int:
    """Move every message of `source` to the queue `target` (bound to the consumer's `requeue`
    exchange by its name), each confirmed before its ack."""
    count = 0
    while (message := await source.get(no_ack=False, fail=False)) is not None:
        await requeue.publish(copy_message(message, message.headers), target, timeout=10)
        await message.ack()
        count += 1
    return count
