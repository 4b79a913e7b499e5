"""The small interfaces every adapter conforms to (structurally; adapters do not inherit).

Local adapters live beside their area; Azure adapters are chosen by `bootstrap.py` from settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from core.events import Envelope
from core.types import EndpointRef, Finding, ModelVersion, RunRef, RunStatus, TelemetryBatch, TrafficSplit, Window

if TYPE_CHECKING:
    import pandas as pd


class Publisher(Protocol):
    """At-least-once publication; the bus message id is `envelope.id`, so repeats are dropped."""

    def publish(self, envelope: Envelope, *, scheduled_at: datetime | None = None) -> None: ...


@dataclass(frozen=True)
class Doc:
    """A stored document and the version tag that must be presented to replace it."""

    data: Mapping[str, Any]
    etag: str


class StateStore(Protocol):
    """A versioned document store: (kind, key) -> JSON document, with optimistic concurrency.

    insert raises ConcurrencyConflict if the key exists; replace raises it if the etag is stale.
    list returns documents of one kind whose key starts with `prefix`, ordered by key.
    Keys are free text; adapters encode them as their storage needs.
    """

    def get(self, kind: str, key: str) -> Doc | None: ...
    def insert(self, kind: str, key: str, data: Mapping[str, Any]) -> str: ...
    def replace(self, kind: str, key: str, data: Mapping[str, Any], etag: str) -> str: ...
    def delete(self, kind: str, key: str, etag: str | None = None) -> None: ...
    def list(self, kind: str, prefix: str = "") -> list[tuple[str, Doc]]: ...


class TelemetrySource(Protocol):
    """Empty window -> empty batch; outage -> raises TelemetryUnavailable (retryable)."""

    def fetch(self, endpoint: EndpointRef, window: Window) -> TelemetryBatch: ...


class ReferenceData(Protocol):
    """A model's reference data set and a fingerprint that changes when its content does."""

    fingerprint: str

    def frame(self) -> "pd.DataFrame": ...


class FittedEvaluator(Protocol):
    def evaluate(self, current: TelemetryBatch) -> list[Finding]: ...


class Evaluator(Protocol):
    name: str

    def fit(self, reference: "pd.DataFrame") -> FittedEvaluator: ...


class Notifier(Protocol):
    """Delivers one message per incident change. Raises RetryableError if the receiver is down."""

    def notify(self, incident: Mapping[str, Any]) -> None: ...


class ReportStore(Protocol):
    def put(self, name: str, content: bytes, content_type: str) -> str: ...  # returns a URI
    def get(self, name: str) -> bytes: ...


class PipelineRunner(Protocol):
    def submit(self, request: Mapping[str, Any], *, idempotency_key: str) -> RunRef: ...
    def status(self, run: RunRef) -> RunStatus: ...


class ModelRegistry(Protocol):
    def get(self, name: str, version: str) -> Mapping[str, Any]: ...
    def latest(self, name: str) -> ModelVersion | None: ...


class Deployer(Protocol):
    def current(self, endpoint: EndpointRef) -> TrafficSplit: ...
    def start_canary(self, endpoint: EndpointRef, candidate: ModelVersion, percent: int) -> TrafficSplit: ...
    def promote(self, endpoint: EndpointRef, candidate: ModelVersion) -> TrafficSplit: ...
    def rollback(self, endpoint: EndpointRef) -> TrafficSplit: ...


