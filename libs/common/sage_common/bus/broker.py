"""The service's one robust RabbitMQ connection, and publishing with publisher confirms.

A publish returns only once the broker has confirmed the message, so a caller (the outbox relay)
may mark it sent. During an outage `publish` waits for the robust connection to come back, up to
its timeout, then raises; it never drops a message silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    DeliveryMode,
)
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import (
    AMQPConnectionError,
    ChannelAccessRefused,
    ChannelClosed,
    ChannelInvalidStateError,
)

from ..events import CloudEvent
from ..metrics import EVENTS_PUBLISHED

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/cloudevents+json"

_LOST = (AMQPConnectionError, ChannelClosed, ChannelInvalidStateError, ConnectionError)

ReconnectHook = Callable[[], None]


class PublishRefused(PermissionError):
    """The broker refused the routing key to this service's user (its topic permissions)."""


class Bus:
    """One robust connection and one confirming channel; declares the durable topic exchange."""

    def __init__(
        self,
        amqp_url: str,
        *,
        exchange: str = "sage.events",
        service: str,
        reconnect_interval: float = 1.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.amqp_url = amqp_url
        self.exchange_name = exchange
        self.service = service
        self.reconnect_interval = reconnect_interval
        self.connect_timeout = connect_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractRobustExchange | None = None
        self._reconnect_hooks: list[ReconnectHook] = []

    async def connect(self) -> None:
        """Connect (raising if the broker is unreachable now) and declare the exchange."""
        connection = await aio_pika.connect_robust(
            self.amqp_url,
            reconnect_interval=self.reconnect_interval,
            timeout=self.connect_timeout,
            client_properties={"connection_name": f"{self.service}"},
        )
        try:
            channel = await connection.channel(publisher_confirms=True)
            self._exchange = await self.declare_exchange(channel)
        except BaseException:
            await connection.close()
            raise
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._connection = connection
        self._channel = channel
        log.info("bus connected", extra={"exchange": self.exchange_name})

    async def declare_exchange(self, channel: AbstractRobustChannel) -> AbstractRobustExchange:
        """The events exchange on `channel` (durable topic), redeclared after a reconnect."""
        return await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def channel(self, *, prefetch: int = 0) -> AbstractRobustChannel:
        """A new confirming channel on the shared connection (one per consumer)."""
        if self._connection is None:
            raise RuntimeError("Bus.connect() was not called")
        channel = await self._connection.channel(publisher_confirms=True)
        if prefetch:
            await channel.set_qos(prefetch_count=prefetch)
        return channel

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None:
            await connection.close()

    @property
    def connected(self) -> bool:
        """True while the connection and the publishing channel are open (for readiness)."""
        connection, channel = self._connection, self._channel
        return (
            connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
            and channel is not None
            and not channel.is_closed
        )

    def on_reconnect(self, hook: ReconnectHook) -> None:
        """Call `hook` each time the robust connection comes back after a drop."""
        self._reconnect_hooks.append(hook)

    async def _on_reconnect(self, *_: Any) -> None:
        log.info("bus reconnected", extra={"exchange": self.exchange_name})
        for hook in self._reconnect_hooks:
            hook()

    async def publish(self, event: CloudEvent, *, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Publish `event` under its routing key and wait for the broker's confirm."""
        body = event.model_dump_json().encode()
        await self.publish_raw(event.routing_key, body, message_id=event.id, timeout=timeout)

    async def publish_raw(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        timeout: float = 10.0,  # noqa: ASYNC109 - the confirm's own deadline
    ) -> None:
        """Publish an already serialised envelope (the outbox's stored body), confirmed."""
        message = aio_pika.Message(
            body,
            content_type=CONTENT_TYPE,
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=message_id,
            app_id=self.service,
        )
        channel, exchange = self._channel, self._exchange
        if channel is None or exchange is None:
            raise RuntimeError("Bus.connect() was not called")
        async with asyncio.timeout(timeout):
            while True:
                # Wait out a reconnect rather than fail at once on a closed channel.
                await channel.ready()
                try:
                    result = await exchange.publish(message, routing_key, mandatory=True)
                    break
                except ChannelAccessRefused as exc:
                    # Not an outage: sending again is refused again (docs/operations.md).
                    raise PublishRefused(
                        f"the broker refused {routing_key} from {self.service}: {exc}"
                    ) from None
                except _LOST as exc:
                    # The connection went before the confirm: send again once it is back. The
                    # broker may then hold two copies; consumers drop the second by its id.
                    log.info("publish interrupted; retrying", extra={"error": repr(exc)})
                    await asyncio.sleep(min(0.1, self.reconnect_interval))
        EVENTS_PUBLISHED.labels(self.service, routing_key).inc()
        if isinstance(result, DeliveredMessage):
            log.warning(
                "event not routed to any queue",
                extra={"exchange": self.exchange_name, "routing_key": routing_key},
            )
