"""The one way a Service Bus trigger consumes an event: decode, skip duplicates, handle, record.

A permanent error (malformed or unknown event, invalid data) must not be retried: it is dead-lettered
with its reason. Any other failure, and work held by another owner (`WorkHeld`), propagates so the host
abandons the message and it comes back (later, with a backoff); the message is recorded as processed
only when its handler returned, so a delivery that did nothing is never mistaken for one that did.
"""
from __future__ import annotations

import logging
from typing import Callable

import azure.functions as func

from core.errors import PermanentError

log = logging.getLogger("mlops.bus")


def consume(msg: func.ServiceBusMessage, consumer: str, handler: Callable[..., object]) -> None:
    import bootstrap
    from core.records import already_processed, mark_processed
    from core.servicebus import from_function_message

    box = bootstrap.container()
    observe = box.observability
    try:
        envelope = from_function_message(msg)
        if already_processed(box.store, consumer, envelope.id):
            log.info("%s: %s %s already processed, skipped", consumer, envelope.type, envelope.id)
            observe.delivery(consumer, "duplicate")
            return
        with observe.handling(envelope, consumer):
            handler(envelope, box)
    except PermanentError as exc:
        observe.delivery(consumer, "rejected")
        box.reject(msg, consumer, exc)
        return
    except Exception as exc:  # retryable, held, or a bug: it comes back; Azure needs the error kept (retry_later)
        observe.delivery(consumer, "retried")  # the host abandons it; it comes back
        box.retry_later(msg, consumer, exc)
        raise
    mark_processed(box.store, consumer, envelope.id, box.clock.now())
    observe.delivery(consumer, "completed")
