"""One error tree. Hosts retry `RetryableError` and dead-letter `PermanentError`."""
from __future__ import annotations

from datetime import datetime


class MlopsError(Exception):
    """Base of every error this service raises on purpose."""


class RetryableError(MlopsError):
    """The same work may succeed later (outage, throttling, lock lost). Never dead-letter on it."""


class PermanentError(MlopsError):
    """The same input will always fail (malformed, unknown, invalid). Dead-letter with the reason."""

    reason: str = "PermanentError"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class MalformedEvent(PermanentError):
    reason = "MalformedEvent"


class UnknownEventType(PermanentError):
    reason = "UnknownEventType"


class ValidationFailed(PermanentError):
    """Input (HTTP body, spec file, CLI argument) failed validation; `field` names what was wrong."""

    reason = "ValidationFailed"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(PermanentError):
    reason = "NotFound"


class ConfigurationError(PermanentError):
    """A setting is missing or invalid; raised at start-up, naming the setting."""

    reason = "ConfigurationError"


class ConcurrencyConflict(RetryableError):
    """Optimistic concurrency lost (ETag mismatch, row already exists). Re-read and decide again."""


class TelemetryUnavailable(RetryableError):
    """The telemetry source cannot answer now (outage, throttling after retries, partial result)."""


class RunnerUnavailable(RetryableError):
    """The pipeline runner or deployer cannot be reached now."""


class WorkHeld(RetryableError):
    """Another owner holds this work (a live lease on a window, a run not yet in the state the event
    announces). The message must come back later, never be completed: `retry_at` says when it is worth it."""

    def __init__(self, message: str, *, retry_at: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at
