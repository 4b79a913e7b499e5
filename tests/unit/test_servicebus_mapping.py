"""Envelopes map onto real Service Bus SDK messages and back from real Functions trigger messages."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.functions.servicebus import ServiceBusMessage as FunctionMessage
from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import MessageSizeExceededError, ServiceBusConnectionError, ServiceBusError

from core.errors import ConfigurationError, MalformedEvent, PermanentError, RetryableError
from core.events import decode, encode, new_event
from core.servicebus import (
    ServiceBusPublisher,
    from_function_message,
    host_settings,
    parse_timespan,
    to_bus_message,
    to_servicebus_message,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EVENT = new_event("mlops.drift.detected.v1",
                  {"monitor": "m", "check_id": "c", "incident_id": "i", "endpoint": "e",
                   "window_start": "2026-03-01T11:00:00Z", "window_end": "2026-03-01T12:00:00Z", "findings": []},
                  id="ev-42", time=NOW, correlationid="inc-7", causationid="ev-41")


def function_message(body: bytes, message_id: str) -> FunctionMessage:
    """The full trigger message the Functions worker builds (the public func.ServiceBusMessage has no id)."""
    return FunctionMessage(
        body=body, trigger_metadata={}, application_properties={"type": EVENT.type}, content_type="application/json",
        correlation_id="inc-7", dead_letter_error_description=None, dead_letter_reason=None, dead_letter_source=None,
        delivery_count=1, enqueued_sequence_number=7, enqueued_time_utc=NOW, expires_at_utc=NOW + timedelta(days=14),
        label=None, locked_until=NOW + timedelta(minutes=1), lock_token="lock-1", message_id=message_id,
        partition_key=None, reply_to=None, reply_to_session_id=None, scheduled_enqueue_time_utc=None,
        sequence_number=7, session_id=None, state=0, subject=EVENT.type, time_to_live=None, to=None,
        transaction_partition_key=None, user_properties={})


def test_envelope_maps_onto_the_sdk_message() -> None:
    message = to_servicebus_message(EVENT)
    assert isinstance(message, ServiceBusMessage)
    assert message.message_id == "ev-42"
    assert message.subject == "mlops.drift.detected.v1"
    assert message.content_type == "application/json"
    assert message.correlation_id == "inc-7"
    assert dict(message.application_properties) == {"type": EVENT.type, "source": EVENT.source,
                                                    "correlationid": "inc-7", "causationid": "ev-41"}
    assert decode(b"".join(message.body)) == EVENT
    assert message.scheduled_enqueue_time_utc is None


def test_scheduled_envelope_carries_its_enqueue_time_and_omits_missing_ids() -> None:
    plain = new_event("mlops.check.requested.v1", {"monitor": "m", "window_start": "a", "window_end": "b"},
                      id="ev-1", time=NOW)
    message = to_servicebus_message(plain, scheduled_at=NOW + timedelta(minutes=5))
    assert message.scheduled_enqueue_time_utc == NOW + timedelta(minutes=5)
    assert dict(message.application_properties) == {"type": plain.type, "source": plain.source}
    local = to_bus_message(plain, NOW + timedelta(minutes=5))
    assert (local.message_id, local.subject, local.scheduled_enqueue_time) == ("ev-1", plain.type,
                                                                              NOW + timedelta(minutes=5))
    assert local.body == b"".join(message.body)


def test_function_trigger_message_round_trips_to_the_envelope() -> None:
    assert from_function_message(function_message(encode(EVENT), "ev-42")) == EVENT


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", json.dumps({"id": "x"}).encode(), b"\xff\xfe"])
def test_malformed_trigger_body_is_a_permanent_error(body: bytes) -> None:
    with pytest.raises(MalformedEvent):
        from_function_message(function_message(body, "x"))


def test_message_id_that_disagrees_with_the_event_id_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="ev-42"):
        from_function_message(function_message(encode(EVENT), "someone-else"))


class FakeSender:
    """The network edge: records the SDK messages it was handed; optionally fails like the SDK does."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.sent: list[ServiceBusMessage] = []
        self.scheduled: list[tuple[ServiceBusMessage, datetime]] = []
        self.closed = False

    def send_messages(self, message: ServiceBusMessage) -> None:
        if self.error:
            raise self.error
        self.sent.append(message)

    def schedule_messages(self, message: ServiceBusMessage, schedule_time_utc: datetime) -> list[int]:
        if self.error:
            raise self.error
        self.scheduled.append((message, schedule_time_utc))
        return [1]

    def close(self) -> None:
        self.closed = True


class FakeClient:
    def __init__(self, sender: FakeSender) -> None:
        self.sender = sender
        self.senders_opened: list[str] = []
        self.closed = False

    def get_topic_sender(self, topic_name: str) -> FakeSender:
        self.senders_opened.append(topic_name)
        return self.sender

    def close(self) -> None:
        self.closed = True


def publisher_with(sender: FakeSender) -> tuple[ServiceBusPublisher, list[tuple[str, object]], list[FakeClient]]:
    calls: list[tuple[str, object]] = []
    clients: list[FakeClient] = []

    def factory(namespace: str, credential: object) -> FakeClient:
        calls.append((namespace, credential))
        clients.append(FakeClient(sender))
        return clients[-1]

    credential = object()
    return ServiceBusPublisher("ns.servicebus.windows.net", "events", credential=credential,
                               client_factory=factory), calls, clients


def test_publisher_sends_and_schedules_real_sdk_messages_on_one_reused_sender() -> None:
    sender = FakeSender()
    publisher, calls, clients = publisher_with(sender)
    publisher.publish(EVENT)
    publisher.publish(EVENT, scheduled_at=NOW + timedelta(hours=1))
    assert len(calls) == 1 and calls[0][0] == "ns.servicebus.windows.net"
    assert clients[0].senders_opened == ["events"]
    [sent] = sender.sent
    assert sent.message_id == "ev-42" and decode(b"".join(sent.body)) == EVENT
    [(scheduled, at)] = sender.scheduled
    assert at == NOW + timedelta(hours=1) and scheduled.scheduled_enqueue_time_utc == at
    publisher.close()
    assert sender.closed and clients[0].closed


def test_connection_failures_are_retryable_and_oversized_events_permanent() -> None:
    publisher, _, _ = publisher_with(FakeSender(ServiceBusConnectionError(message="connection reset")))
    with pytest.raises(RetryableError, match="ev-42"):
        publisher.publish(EVENT)
    publisher, _, _ = publisher_with(FakeSender(ServiceBusError("server busy", retryable=True)))
    with pytest.raises(RetryableError):
        publisher.publish(EVENT)
    publisher, _, _ = publisher_with(FakeSender(MessageSizeExceededError(message="too big")))
    with pytest.raises(PermanentError) as caught:
        publisher.publish(EVENT)
    assert caught.value.reason == "MessageSizeExceeded"


def test_host_settings_and_timespans() -> None:
    settings = host_settings(Path(__file__).resolve().parents[2] / "host.json")
    assert settings == {"max_delivery_count": 5, "lock_duration": timedelta(minutes=1),
                        "duplicate_window": timedelta(minutes=10)}
    assert parse_timespan("1.02:03:04.5") == timedelta(days=1, hours=2, minutes=3, seconds=4.5)
    assert parse_timespan("00:00:00.80") == timedelta(seconds=0.8)
    with pytest.raises(ConfigurationError, match="lockDuration"):
        parse_timespan("60s", "lockDuration")
