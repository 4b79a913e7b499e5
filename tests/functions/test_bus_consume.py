"""functions/_bus.consume in Azure mode, with a real azure.functions ServiceBusMessage: the standard trigger cannot
settle, so a permanent error is kept with its reason and completed, and the last failed delivery of a retryable
error keeps the handler's real error (Service Bus's own dead-letter only says MaxDeliveryCountExceeded)."""
import time

import pytest
from azure.functions.servicebus import ServiceBusMessage

from core.errors import RetryableError, ValidationFailed
from core.events import encode, new_event


@pytest.fixture
def azure_box(tmp_path, monkeypatch):
    import bootstrap
    from core.settings import Settings

    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "mlops-test.servicebus.windows.net")
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    box = bootstrap.configure(Settings())
    yield box
    monkeypatch.delenv("ServiceBusConnection__fullyQualifiedNamespace")
    bootstrap.configure(Settings())


def message(delivery_count: int) -> tuple[ServiceBusMessage, str]:
    event = new_event("mlops.check.requested.v1", {"monitor": "m", "window_start": "2013-04-01T00:00:00Z",
                                                   "window_end": "2013-04-02T00:00:00Z"}, id="evt-1")
    return ServiceBusMessage(body=encode(event), message_id=event.id, delivery_count=delivery_count,
                             application_properties={}, user_properties={}), event.id


def test_the_last_failed_delivery_keeps_the_real_error_and_deliveries_are_spaced(azure_box, monkeypatch):
    from functions._bus import consume

    pauses = []
    monkeypatch.setattr(time, "sleep", pauses.append)  # the host's wall clock, not ours: recorded, not waited

    def down(envelope, box):
        raise RetryableError("Log Analytics answered 503")

    for count in (1, 5):  # host.json: maxDeliveryCount 5
        msg, event_id = message(count)
        with pytest.raises(RetryableError):
            consume(msg, "run-check", down)
    assert pauses == [5.0, 30.0]  # backoff by delivery count, bounded within the function's time
    dead = azure_box.store.get("deadletter", f"run-check/{event_id}").data
    assert dead["description"] == "RetryableError: Log Analytics answered 503" and dead["deliveries"] == 5
    assert azure_box.store.get("inbox", f"run-check/{event_id}") is None  # not recorded as processed


def test_a_permanent_error_is_kept_with_its_reason_and_completed(azure_box):
    from functions._bus import consume

    def invalid(envelope, box):
        raise ValidationFailed("monitor 'm' is not configured", field="monitor")

    msg, event_id = message(1)
    consume(msg, "run-check", invalid)  # returns: the message completes instead of burning retries
    dead = azure_box.store.get("deadletter", f"run-check/{event_id}").data
    assert (dead["reason"], dead["description"]) == ("ValidationFailed", "monitor 'm' is not configured")
