"""One Service Bus trigger invocation with the host's settlement rules, and lock renewal while it runs.

Returns -> complete. Raises -> abandon with a backoff (core.retry.redelivery_delay: 5 s, 10 s, 20 s ...
capped), keeping the error, so the dead-letter after maxDeliveryCount says what went wrong; a
`core.errors.WorkHeld` comes back when its holder's lease ends. Raises a `core.errors.PermanentError` ->
dead-letter at once with `exc.reason` and `str(exc)`: devhost's own convention, since the same input
will always fail. (In Azure the standard trigger cannot settle, so the function catches permanent errors
itself and completes; devhost accepts that too.)
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from azure.functions.servicebus import ServiceBusMessage

from core.bus import ReceivedMessage
from core.clock import Clock
from core.errors import PermanentError, WorkHeld
from core.localbus import LockLost, SqliteBus
from core.retry import retry_delay
from core.types import iso
from devhost.bindings import BusFunction

log = logging.getLogger("devhost")
_RENEW_POLL_S = 0.1  # wall seconds between checks; renewal itself happens at half the lock duration


def to_function_message(received: ReceivedMessage) -> ServiceBusMessage:
    """The full message a Service Bus trigger receives, with the peek-lock details filled in."""
    m = received.message
    props = dict(m.application_properties)
    metadata = {"MessageId": m.message_id, "DeliveryCount": received.delivery_count,
                "SequenceNumber": received.sequence_number, "EnqueuedTimeUtc": iso(received.enqueued_time),
                "LockedUntil": iso(received.locked_until), "LockToken": received.lock_token,
                "ContentType": m.content_type, "Label": m.subject, "Subject": m.subject,
                "CorrelationId": m.correlation_id, "ApplicationProperties": props, "UserProperties": props}
    return ServiceBusMessage(
        body=m.body, trigger_metadata=metadata, application_properties=props, user_properties=dict(props),
        content_type=m.content_type, correlation_id=m.correlation_id, delivery_count=received.delivery_count,
        enqueued_sequence_number=received.sequence_number, enqueued_time_utc=received.enqueued_time,
        label=m.subject, subject=m.subject, locked_until=received.locked_until, lock_token=received.lock_token,
        message_id=m.message_id, scheduled_enqueue_time_utc=m.scheduled_enqueue_time,
        sequence_number=received.sequence_number, to=received.entity)


class InFlight:
    """A received message until it is settled exactly once, by its handler or by shutdown."""

    def __init__(self, bus: SqliteBus, function: BusFunction, received: ReceivedMessage) -> None:
        self.bus = bus
        self.function = function
        self.received = received
        self._lock = threading.Lock()
        self._settled = False

    def settle(self, action: str, reason: str = "", description: str = "", delay: timedelta = timedelta(0)) -> str:
        """complete | abandon | dead_letter; returns the outcome for the log line."""
        with self._lock:
            if self._settled:
                return "already settled by shutdown"
            self._settled = True
        token = self.received.lock_token
        try:
            if action == "complete":
                self.bus.complete(token)
            elif action == "abandon":
                self.bus.abandon(token, delay=delay, error=description)
            else:
                self.bus.dead_letter(token, reason, description)
        except LockLost as exc:
            # Lock expired (the message will be redelivered) or the function settled it itself.
            return f"{action} failed: {exc}"
        return {"complete": "completed", "abandon": "abandoned"}.get(action, f"dead-lettered({reason})")


class LockRenewer:
    """Keeps a message's lock while its handler runs: renews when half the lock duration is left."""

    def __init__(self, bus: SqliteBus, clock: Clock, received: ReceivedMessage) -> None:
        self.bus, self.clock, self.token = bus, clock, received.lock_token
        self.locked_until = received.locked_until
        self.renewals = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"renew-{self.token[:8]}", daemon=True)

    def __enter__(self) -> "LockRenewer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        half = self.bus.lock_duration / 2
        wait, last_sim, last_wall = 0.005, self.clock.now(), time.monotonic()  # first: measure the rate
        while not self._done.wait(wait):
            now, wall = self.clock.now(), time.monotonic()
            # A simulated clock may run many times faster than the wall: poll often enough to see the
            # renewal point (a quarter of the half-lock in simulated time) coming.
            rate = (now - last_sim).total_seconds() / max(wall - last_wall, 1e-6)
            wait = min(_RENEW_POLL_S, max(0.002, half.total_seconds() / 4 / rate)) if rate > 0 else _RENEW_POLL_S
            last_sim, last_wall = now, wall
            if now < self.locked_until - half:
                continue
            try:
                self.locked_until = self.bus.renew_lock(self.token)
                self.renewals += 1
            except LockLost as exc:
                log.warning("lock renewal failed, the message may be redelivered: %s", exc)
                return


def process(bus: SqliteBus, clock: Clock, inflight: InFlight) -> str:
    """Run the function on one received message and settle it; returns the outcome."""
    fn, received = inflight.function, inflight.received
    started = time.perf_counter()
    outcome = "abandoned (interrupted)"
    try:
        with LockRenewer(bus, clock, received):
            try:
                fn(to_function_message(received))
            except PermanentError as exc:
                outcome = inflight.settle("dead_letter", exc.reason, str(exc))
            except Exception as exc:  # any other failure is retried by the bus, as the Functions host does
                delay = retry_delay(exc, received.delivery_count, clock.now())
                if isinstance(exc, WorkHeld):
                    log.info("function %s: message %s held elsewhere (%s); back in %s", fn.name,
                             received.message.message_id, exc, delay)
                else:
                    log.exception("function %s failed on message %s (delivery %d); retry in %s", fn.name,
                                  received.message.message_id, received.delivery_count, delay)
                outcome = inflight.settle("abandon", description=f"{type(exc).__name__}: {exc}", delay=delay)
            else:
                outcome = inflight.settle("complete")
    finally:
        if outcome == "abandoned (interrupted)":
            inflight.settle("abandon")
        log.info("invoked %s trigger=serviceBus entity=%s message_id=%s delivery=%d outcome=%s duration_ms=%.1f",
                 fn.name, received.entity, received.message.message_id, received.delivery_count, outcome,
                 (time.perf_counter() - started) * 1000)
    return outcome
