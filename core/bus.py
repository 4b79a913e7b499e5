"""Bus message values shared by the local SQLite bus, the Service Bus mapping and devhost."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping


@dataclass(frozen=True)
class BusMessage:
    """What is sent: the subset of Service Bus message properties this service uses."""

    message_id: str
    body: bytes
    subject: str = ""
    content_type: str = "application/json"
    correlation_id: str | None = None
    application_properties: Mapping[str, Any] = field(default_factory=dict)
    scheduled_enqueue_time: datetime | None = None


@dataclass(frozen=True)
class ReceivedMessage:
    """What a peek-lock receive hands out; settle it with its lock_token."""

    message: BusMessage
    lock_token: str
    delivery_count: int
    enqueued_time: datetime
    locked_until: datetime
    sequence_number: int
    entity: str
