"""Envelope <-> Service Bus message mapping, the Service Bus publisher, and host.json bus settings.

On the bus, MessageId = envelope id (so Service Bus duplicate detection drops repeats) and
Subject = event type (so subscription filters route on it). Nothing from azure.* is imported at
module level: the Functions app pays for the SDK only when it first publishes.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.bus import BusMessage, ReceivedMessage
from core.errors import ConfigurationError, MalformedEvent, PermanentError, RetryableError
from core.events import CONTENT_TYPE, Envelope, decode, encode
from core.routing import TOPIC
from core.types import utc

if TYPE_CHECKING:
    import azure.functions
    import azure.servicebus


def application_properties(envelope: Envelope) -> dict[str, str]:
    props = {"type": envelope.type, "source": envelope.source,
             "correlationid": envelope.correlationid, "causationid": envelope.causationid}
    return {key: value for key, value in props.items() if value is not None}


def to_bus_message(envelope: Envelope, scheduled_at: datetime | None = None) -> BusMessage:
    return BusMessage(message_id=envelope.id, body=encode(envelope), subject=envelope.type,
                      content_type=CONTENT_TYPE, correlation_id=envelope.correlationid,
                      application_properties=application_properties(envelope),
                      scheduled_enqueue_time=utc(scheduled_at) if scheduled_at else None)


def to_servicebus_message(envelope: Envelope,
                          scheduled_at: datetime | None = None) -> "azure.servicebus.ServiceBusMessage":
    from azure.servicebus import ServiceBusMessage

    return ServiceBusMessage(encode(envelope), message_id=envelope.id, subject=envelope.type,
                             content_type=CONTENT_TYPE, correlation_id=envelope.correlationid,
                             application_properties=application_properties(envelope),
                             scheduled_enqueue_time_utc=utc(scheduled_at) if scheduled_at else None)


def from_function_message(msg: "azure.functions.ServiceBusMessage") -> Envelope:
    """A Service Bus trigger's message -> Envelope; bad bodies raise a permanent error (dead-letter)."""
    envelope = decode(msg.get_body())
    message_id = getattr(msg, "message_id", None)
    if message_id and message_id != envelope.id:
        raise MalformedEvent(f"message_id {message_id!r} differs from the event id {envelope.id!r}")
    return envelope


def from_received(received: ReceivedMessage) -> Envelope:
    envelope = decode(received.message.body)
    if received.message.message_id != envelope.id:
        raise MalformedEvent(f"message_id {received.message.message_id!r} differs from the event id {envelope.id!r}")
    return envelope


ClientFactory = Callable[[str, Any], Any]


class ServiceBusPublisher:
    """core.ports.Publisher on an Azure Service Bus topic, with an identity-based connection.

    `client_factory(namespace, credential)` returns a ServiceBusClient (tests inject a fake one at
    the network edge). The topic sender is opened on first use and reused until close().
    """

    def __init__(self, namespace: str, topic: str = TOPIC, *, credential: Any = None,
                 client_factory: ClientFactory | None = None) -> None:
        if not namespace:
            raise ConfigurationError("ServiceBusConnection__fullyQualifiedNamespace is empty")
        self.namespace = namespace
        self.topic = topic
        self._credential = credential
        self._client_factory = client_factory or _default_client
        self._client: Any = None
        self._sender: Any = None

    def publish(self, envelope: Envelope, *, scheduled_at: datetime | None = None) -> None:
        from azure.servicebus.exceptions import MessageSizeExceededError, ServiceBusError

        message = to_servicebus_message(envelope, scheduled_at)
        try:
            sender = self._open()
            if scheduled_at is not None:
                sender.schedule_messages(message, utc(scheduled_at))
            else:
                sender.send_messages(message)
        except MessageSizeExceededError as exc:
            # The same event will never fit: retrying cannot help.
            raise PermanentError(f"event {envelope.id} is too large for Service Bus: {exc}",
                                 reason="MessageSizeExceeded") from exc
        except ServiceBusError as exc:
            # Connection, timeout, throttling and also auth: role assignments take minutes to
            # propagate, so a retry (and eventually the bus's own dead-lettering) is the safe choice.
            raise RetryableError(f"publishing {envelope.type} {envelope.id} to {self.topic} failed: {exc}") from exc

    def close(self) -> None:
        sender, client = self._sender, self._client
        self._sender = self._client = None
        if sender is not None:
            sender.close()
        if client is not None:
            client.close()

    def _open(self) -> Any:
        if self._sender is None:
            if self._client is None:
                credential = self._credential
                if credential is None:
                    from azure.identity import DefaultAzureCredential

                    credential = self._credential = DefaultAzureCredential()
                self._client = self._client_factory(self.namespace, credential)
            self._sender = self._client.get_topic_sender(topic_name=self.topic)
        return self._sender


def _default_client(namespace: str, credential: Any) -> Any:
    from azure.servicebus import ServiceBusClient

    return ServiceBusClient(fully_qualified_namespace=namespace, credential=credential)


def host_settings(host_json: Path = Path("host.json")) -> dict[str, Any]:
    """extensions.serviceBus of host.json as SqliteBus keyword arguments (absent keys are left out)."""
    try:
        doc = json.loads(Path(host_json).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read {host_json}: {exc}") from exc
    config = doc.get("extensions", {}).get("serviceBus", {})
    settings: dict[str, Any] = {}
    if "maxDeliveryCount" in config:
        value = config["maxDeliveryCount"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigurationError(f"host.json serviceBus.maxDeliveryCount: expected an integer >= 1, got {value!r}")
        settings["max_delivery_count"] = value
    for key, name in (("lockDuration", "lock_duration"), ("duplicateDetectionHistoryTimeWindow", "duplicate_window")):
        if key in config:
            settings[name] = parse_timespan(config[key], f"host.json serviceBus.{key}")
    return settings


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")


def parse_timespan(text: str, field: str = "timespan") -> timedelta:
    """A .NET TimeSpan as host.json writes it: [d.]hh:mm:ss[.fff]."""
    match = _TIMESPAN.match(str(text))
    if match is None:
        raise ConfigurationError(f"{field}: expected [d.]hh:mm:ss[.fff], got {text!r}")
    days, hours, minutes, seconds = match.groups()
    return timedelta(days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=float(seconds))
