"""CloudEvents 1.0 envelopes whose `data` is a versioned pydantic model.

The routing key is the short event name (`build.done`); the CloudEvents `type` adds the namespace
and version (`org.sagecontinuum.ecr.build.done.v1`). Event data models live in `sage_common.schemas`.
"""

from __future__ import annotations

import builtins
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from .logs import request_id

TYPE_PREFIX = "org.sagecontinuum.ecr."


class EventData(BaseModel):
    """Base of every event's `data`; subclasses name their routing key and version."""

    model_config = ConfigDict(extra="allow")

    routing_key: ClassVar[str] = ""
    version: ClassVar[int] = 1

    @classmethod
    def event_type(cls) -> str:
        return f"{TYPE_PREFIX}{cls.routing_key}.v{cls.version}"


_D = TypeVar("_D", bound=EventData)


class CloudEvent(BaseModel):
    """The envelope on the wire. `requestid` is a CloudEvents extension carrying the request id."""

    model_config = ConfigDict(extra="allow")

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    datacontenttype: str = "application/json"
    requestid: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def routing_key(self) -> str:
        return self.type.removeprefix(TYPE_PREFIX).rsplit(".v", 1)[0]

    def parse_data(self, model: builtins.type[_D]) -> _D:
        return model.model_validate(self.data)


def make_event(source: str, data: EventData, *, subject: str | None = None) -> CloudEvent:
    """Wrap `data` in an envelope stamped with the current request id."""
    if not data.routing_key:
        raise ValueError(f"{type(data).__name__} has no routing_key")
    return CloudEvent(
        source=source,
        type=data.event_type(),
        subject=subject,
        requestid=request_id.get(),
        data=data.model_dump(mode="json"),
    )
