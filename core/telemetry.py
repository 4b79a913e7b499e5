"""What a scoring script logs for each request, and the logger it calls from init()/run().

One schema, two destinations: the local SQLite store (`core.telemetry_store`) or, in Azure, the Log Analytics
custom tables `MLRequests_CL` / `MLLabels_CL` through the Logs Ingestion API (a data collection rule).
Ground-truth labels arrive later, keyed by request id. No pandas here: scoring scripts import this at start.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time as _time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from core.errors import ConfigurationError, RetryableError, ValidationFailed
from core.plain import plain
from core.types import iso

log = logging.getLogger(__name__)

# Log Analytics custom table columns (name, KQL type), in the order the sources project them.
REQUEST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("TimeGenerated", "datetime"), ("RequestId", "string"), ("Endpoint", "string"), ("Deployment", "string"),
    ("ModelVersion", "string"), ("Inputs", "dynamic"), ("Prediction", "dynamic"), ("Score", "real"),
    ("LatencyMs", "real"), ("StatusCode", "int"), ("Generation", "dynamic"),
)
LABEL_COLUMNS: tuple[tuple[str, str], ...] = (("TimeGenerated", "datetime"), ("RequestId", "string"),
                                              ("Label", "dynamic"))
REQUESTS_STREAM, LABELS_STREAM = "Custom-MLRequests_CL", "Custom-MLLabels_CL"


# What a generative endpoint adds to a request, each optional: the texts in and out, what the model was given to
# ground its answer, the expected answer when known, token counts, the model deployment and why it stopped.
GENERATION_TEXTS = ("prompt", "response", "context", "ground_truth")
GENERATION_FIELDS = (*GENERATION_TEXTS, "tokens_in", "tokens_out", "model", "finish_reason")


@dataclass(frozen=True)
class Generation:
    prompt: str | None = None
    response: str | None = None
    context: str | None = None
    ground_truth: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    model: str | None = None  # the model (deployment) that answered, e.g. "gpt-4o-mini-2024-07-18"
    finish_reason: str | None = None  # stop | length | content_filter | tool_calls | ...

    def __post_init__(self) -> None:
        for name in (*GENERATION_TEXTS, "model", "finish_reason"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValidationFailed(f"generation.{name} must be text, got {type(value).__name__}",
                                       field=f"generation.{name}")
        for name in ("tokens_in", "tokens_out"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValidationFailed(f"generation.{name} must be a non-negative integer, got {value!r}",
                                       field=f"generation.{name}")

    @classmethod
    def of(cls, value: "Generation | Mapping[str, Any] | None") -> "Generation | None":
        if value is None or isinstance(value, Generation):
            return value
        if not isinstance(value, Mapping):
            raise ValidationFailed("generation must be a mapping of its fields", field="generation")
        unknown = sorted(set(value) - set(GENERATION_FIELDS))
        if unknown:
            raise ValidationFailed(f"generation has unknown fields {unknown}; known: {list(GENERATION_FIELDS)}",
                                   field="generation")
        return cls(**value)

    def to_json(self) -> dict[str, Any]:
        """The fields that are set (a classifier's request logs none of them)."""
        return {name: getattr(self, name) for name in GENERATION_FIELDS if getattr(self, name) is not None}


@dataclass(frozen=True)
class RequestRecord:
    time: datetime
    request_id: str
    endpoint: str
    deployment: str
    model_version: str
    inputs: Mapping[str, Any]
    prediction: Any
    score: float | None
    latency_ms: float
    status_code: int
    generation: Generation | None = None  # generative endpoints only

    def __post_init__(self) -> None:
        _aware(self.time, "time")
        object.__setattr__(self, "generation", Generation.of(self.generation))
        for name in ("request_id", "endpoint"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValidationFailed(f"{name} must be a non-empty string", field=name)
        if not isinstance(self.inputs, Mapping):
            raise ValidationFailed("inputs must be a mapping of feature name to value", field="inputs")
        if not isinstance(self.latency_ms, (int, float)) or not math.isfinite(self.latency_ms):
            raise ValidationFailed(f"latency_ms must be a finite number, got {self.latency_ms!r}", field="latency_ms")


@dataclass(frozen=True)
class LabelRecord:
    request_id: str
    label: Any
    time: datetime

    def __post_init__(self) -> None:
        _aware(self.time, "time")
        if not isinstance(self.request_id, str) or not self.request_id:
            raise ValidationFailed("request_id must be a non-empty string", field="request_id")


def _aware(moment: Any, name: str) -> None:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValidationFailed(f"{name} must be a timezone-aware datetime, got {moment!r}", field=name)


def to_json_text(value: Any) -> str:
    """JSON text for stored values; NaN/inf stay as the non-standard tokens so they can be counted later."""
    return _ENCODER.encode(value)


# One encoder, not one per call. numpy values (what models hand back) become Python ones, anything else text.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=lambda v: plain(v, nonfinite="keep", default=str))


def request_row(record: RequestRecord) -> dict[str, Any]:
    """One row of MLRequests_CL, as sent to the Logs Ingestion API (Generation only for generative requests)."""
    row = {"TimeGenerated": iso(record.time), "RequestId": record.request_id, "Endpoint": record.endpoint,
            "Deployment": record.deployment, "ModelVersion": record.model_version,
            "Inputs": json.loads(to_json_text(dict(record.inputs))), "Prediction": json.loads(
                to_json_text(record.prediction)), "Score": None if record.score is None else float(record.score),
            "LatencyMs": float(record.latency_ms), "StatusCode": int(record.status_code)}
    if record.generation is not None:
        row["Generation"] = record.generation.to_json()
    return row


def label_row(label: LabelRecord) -> dict[str, Any]:
    return {"TimeGenerated": iso(label.time), "RequestId": label.request_id, "Label": label.label}


class TelemetrySink(Protocol):
    def write(self, records: Sequence[RequestRecord]) -> None: ...
    def write_labels(self, labels: Sequence[LabelRecord]) -> None: ...


@dataclass(frozen=True)
class DeploymentHealth:
    requests: int
    errors: int  # responses with status >= 500: the deployment's fault, not the caller's
    error_rate: float
    p95_latency_ms: float | None


class HealthReader(Protocol):
    def deployment_health(self, endpoint: str, deployment: str, since: datetime,
                          until: datetime) -> DeploymentHealth: ...


class LogsIngestionTelemetrySink:
    """Azure: rows go to a data collection rule (DCR) through its endpoint (DCE), identity-based auth."""

    def __init__(self, endpoint: str, rule_id: str, *, credential: Any = None, client: Any = None,
                 requests_stream: str = REQUESTS_STREAM, labels_stream: str = LABELS_STREAM, **client_kwargs: Any):
        if client is None:
            from azure.monitor.ingestion import LogsIngestionClient  # lazy: only the Azure path needs it
            if credential is None:
                from azure.identity import DefaultAzureCredential
                credential = DefaultAzureCredential()
            client = LogsIngestionClient(endpoint=endpoint, credential=credential, **client_kwargs)
        self._client, self._rule_id = client, rule_id
        self._streams = (requests_stream, labels_stream)

    def write(self, records: Sequence[RequestRecord]) -> None:
        self._upload(self._streams[0], records, [request_row(r) for r in records])

    def write_labels(self, labels: Sequence[LabelRecord]) -> None:
        self._upload(self._streams[1], labels, [label_row(x) for x in labels])

    def _upload(self, stream: str, items: Sequence[Any], rows: list[dict[str, Any]]) -> None:
        """Uploads in ~1 MB chunks; only the chunks that failed are reported back, so none is sent twice."""
        if not rows:
            return
        # Strict JSON for the API: non-finite numbers go as text ("NaN") so they stay countable.
        strict = [plain(row, nonfinite="text") for row in rows]
        by_row = {id(row): item for row, item in zip(strict, items, strict=True)}
        failed: list[Any] = []
        errors: list[str] = []

        def on_error(error: Any) -> None:
            failed.extend(by_row[id(row)] for row in error.failed_logs)
            errors.append(str(error.error))

        self._client.upload(rule_id=self._rule_id, stream_name=stream, logs=strict, on_error=on_error)
        if failed:
            raise SinkWriteFailed(f"Logs Ingestion upload to {stream} failed for {len(failed)} of {len(rows)} "
                                  f"rows: {errors[0]}", failed=failed)


class SinkWriteFailed(RetryableError):
    """Some items were not written; `failed` lists exactly those (the rest were, and must not be resent)."""

    def __init__(self, message: str, *, failed: Sequence[Any]) -> None:
        super().__init__(message)
        self.failed = list(failed)


class RequestLogger:
    """Buffers request records and writes them in batches; never breaks scoring when the sink is down.

    Records that cannot be written stay buffered (up to `max_buffer`, oldest dropped and counted beyond).
    """

    def __init__(self, sink: TelemetrySink, *, endpoint: str, deployment: str, model_version: str,
                 batch_size: int = 100, flush_interval_s: float = 5.0, max_buffer: int = 10_000) -> None:
        self.sink, self.endpoint, self.deployment, self.model_version = sink, endpoint, deployment, model_version
        self.batch_size, self.flush_interval_s = batch_size, flush_interval_s
        self._buffer: deque[RequestRecord] = deque(maxlen=max_buffer)
        self._labels: deque[LabelRecord] = deque(maxlen=max_buffer)
        self._lock = threading.Lock()
        self._last_flush = _time.monotonic()
        self.dropped = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> "RequestLogger":
        """Azure when MLOPS_TELEMETRY_DCE and MLOPS_TELEMETRY_DCR_ID are set, else the local SQLite store.

        Endpoint and deployment names come from MLOPS_ENDPOINT/ENDPOINT_NAME and MLOPS_DEPLOYMENT/DEPLOYMENT_NAME
        (Azure ML sets the latter two in online deployments), the model version from MLOPS_MODEL_VERSION.
        """
        env = os.environ if env is None else env
        endpoint = env.get("MLOPS_ENDPOINT") or env.get("ENDPOINT_NAME")
        if not endpoint:
            raise ConfigurationError("set MLOPS_ENDPOINT (or ENDPOINT_NAME) to the endpoint being logged")
        deployment = env.get("MLOPS_DEPLOYMENT") or env.get("DEPLOYMENT_NAME") or "default"
        sink: TelemetrySink
        if env.get("MLOPS_TELEMETRY_DCE"):
            if not env.get("MLOPS_TELEMETRY_DCR_ID"):
                raise ConfigurationError("MLOPS_TELEMETRY_DCE is set but MLOPS_TELEMETRY_DCR_ID is not")
            sink = LogsIngestionTelemetrySink(env["MLOPS_TELEMETRY_DCE"], env["MLOPS_TELEMETRY_DCR_ID"])
        else:
            from core.telemetry_store import SqliteTelemetryStore
            default = Path(env.get("MLOPS_DATA_DIR", ".local")) / "telemetry.sqlite"
            sink = SqliteTelemetryStore(env.get("MLOPS_TELEMETRY_DB") or default)
        return cls(sink, endpoint=endpoint, deployment=deployment,
                   model_version=env.get("MLOPS_MODEL_VERSION", "unknown"), **kwargs)

    def log(self, *, inputs: Mapping[str, Any], prediction: Any, latency_ms: float, score: float | None = None,
            status_code: int = 200, request_id: str | None = None, time: datetime | None = None,
            generation: Generation | Mapping[str, Any] | None = None) -> RequestRecord:
        """One request. A generative endpoint passes `generation` (prompt, response, context, ground_truth,
        tokens_in, tokens_out, model, finish_reason: any of them) beside its inputs."""
        record = RequestRecord(time=time or datetime.now(timezone.utc), request_id=request_id or str(uuid.uuid4()),
                               endpoint=self.endpoint, deployment=self.deployment, model_version=self.model_version,
                               inputs=inputs, prediction=prediction, score=score, latency_ms=latency_ms,
                               status_code=status_code, generation=generation)
        with self._lock:
            self._push(self._buffer, record)
            due = len(self._buffer) >= self.batch_size or _time.monotonic() - self._last_flush >= self.flush_interval_s
        if due:
            self.flush()
        return record

    def label(self, request_id: str, label: Any, time: datetime | None = None) -> None:
        with self._lock:
            self._push(self._labels, LabelRecord(request_id, label, time or datetime.now(timezone.utc)))

    def flush(self) -> int:
        """Write what is buffered; returns how many records were written. The lock is not held while writing."""
        with self._lock:
            records, labels = list(self._buffer), list(self._labels)
            self._buffer.clear()
            self._labels.clear()
            self._last_flush = _time.monotonic()
        kept_records = self._send(records, self.sink.write)
        kept_labels = self._send(labels, self.sink.write_labels)
        with self._lock:  # what failed goes back in front of what was logged meanwhile, oldest dropped first
            for queue, kept in ((self._buffer, kept_records), (self._labels, kept_labels)):
                if kept:
                    newer = list(queue)
                    queue.clear()
                    for item in kept + newer:
                        self._push(queue, item)
        return len(records) - len(kept_records)

    def _send(self, items: list[Any], write: Any) -> list[Any]:
        """Returns the items that were not written."""
        if not items:
            return []
        try:
            write(items)
        except RetryableError as exc:
            kept = exc.failed if isinstance(exc, SinkWriteFailed) else items
            log.warning("telemetry sink unavailable, %d items kept for the next flush: %s", len(kept), exc)
            return kept
        return []

    def close(self) -> None:
        self.flush()

    def _push(self, queue: deque, item: Any) -> None:
        if len(queue) == queue.maxlen:
            self.dropped += 1
        queue.append(item)
