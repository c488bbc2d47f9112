"""The event bus: a transactional outbox, a confirming publisher and idempotent consumers.

Every event is a CloudEvents envelope on one durable topic exchange, routed by its short name
(`build.done`). `docs/adr/0002-event-delivery.md` says why it is built this way.
"""

from .broker import CONTENT_TYPE, Bus, PublishRefused
from .consumer import DEFAULT_RETRY_DELAYS, Consumer, queue_names, requeue_exchange_name
from .envelope import InvalidEnvelope, Skip, parse_envelope
from .outbox import BusUnavailable, OutboxRelay, enqueue

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_RETRY_DELAYS",
    "Bus",
    "BusUnavailable",
    "Consumer",
    "InvalidEnvelope",
    "OutboxRelay",
    "PublishRefused",
    "Skip",
    "enqueue",
    "parse_envelope",
    "queue_names",
    "requeue_exchange_name",
]
