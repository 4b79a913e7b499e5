"""The service's own telemetry: one trace per event chain, metrics an operator alerts on, logs with trace ids.

Traces: every published event carries the W3C `traceparent` of its "publish" span as a CloudEvents extension
attribute (the CloudEvents distributed-tracing extension), and every consumer's span is that span's child, so a
timer tick, the check it requested, the incident the check opened and the retrain the incident started are one
trace. Spans carry the CloudEvents `id`, `type`, `correlationid` and `causationid`. An event without a
traceparent (published before this existed, or by another tool) still joins its chain: the trace id is derived
from its correlation id and the parent from its causation id.

Metrics (OpenTelemetry instruments, names under `mlops.`): checks {monitor, status}, verdicts {monitor, signal,
breached}, check duration (s) {monitor}, incidents {monitor, signal, status}, retrains {endpoint, stage},
deliveries {consumer, outcome}, dead-letters {consumer, reason}, events published {type}.

Where it goes: with APPLICATIONINSIGHTS_CONNECTION_STRING set, to Application Insights through
`azure-monitor-opentelemetry` (logs of the `mlops` loggers included, with their trace ids); otherwise one line
per span and a metrics summary a minute on the `mlops.trace` / `mlops.metrics` loggers ("log"), OpenTelemetry's
console exporters ("console"), or nowhere ("off"): MLOPS_OTEL_EXPORT. This module imports the OpenTelemetry SDK: only
bootstrap imports it, on first use, never `import function_app`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from opentelemetry import trace
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from core.events import Envelope
    from core.ports import Publisher

TRACEPARENT = "traceparent"
MODES = ("auto", "azure", "log", "console", "off")
_STAGES = {"mlops.retrain.requested.v1": "requested", "mlops.retrain.started.v1": "started",
           "mlops.retrain.completed.v1": "completed", "mlops.challenger.accepted.v1": "accepted",
           "mlops.challenger.rejected.v1": "rejected", "mlops.canary.started.v1": "canary",
           "mlops.model.promoted.v1": "promoted", "mlops.model.rolled_back.v1": "rolled_back"}
log = logging.getLogger("mlops.trace")


class Observability:
    """Spans and instruments over given OpenTelemetry providers (tests hand in-memory ones)."""

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        self.tracer_provider, self.meter_provider = tracer_provider, meter_provider
        self.tracer = tracer_provider.get_tracer("mlops")
        meter = meter_provider.get_meter("mlops")
        counter = meter.create_counter
        self.checks = counter("mlops.checks", "{check}", "Checks finished, by monitor and status")
        self.verdicts = counter("mlops.verdicts", "{verdict}", "Signal verdicts, by monitor, signal and breached")
        self.check_duration = meter.create_histogram("mlops.check.duration", "s", "Time to run one check")
        self.incidents = counter("mlops.incidents", "{change}", "Incident changes, by monitor, signal and status")
        self.retrains = counter("mlops.retrains", "{event}", "Retrain stages reached, by endpoint and stage")
        self.deliveries = counter("mlops.deliveries", "{message}", "Bus deliveries, by consumer and outcome")
        self.deadletters = counter("mlops.deadletters", "{message}", "Messages dead-lettered, by consumer, reason")
        self.events = counter("mlops.events.published", "{event}", "Events published, by type")

    # --- spans ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[Any]:
        """A span for work that starts a chain (a timer tick, an HTTP request)."""
        with self.tracer.start_as_current_span(name, attributes=_attrs(attributes)) as span:
            yield span

    @contextlib.contextmanager
    def handling(self, envelope: Envelope, consumer: str) -> Iterator[Any]:
        """The consumer's span for one event: a child of the span that published it."""
        attributes = {**event_attributes(envelope), "messaging.consumer.group.name": consumer}
        with self.tracer.start_as_current_span(f"{consumer} {envelope.type}", context=parent_context(envelope),
                                               kind=SpanKind.CONSUMER, attributes=attributes) as span:
            yield span

    def publish(self, publisher: Publisher, envelope: Envelope, **kwargs: Any) -> Envelope:
        """Publish inside a producer span and stamp the event with that span's traceparent."""
        with self.tracer.start_as_current_span(f"publish {envelope.type}", kind=SpanKind.PRODUCER,
                                               attributes=event_attributes(envelope)) as span:
            traced = replace(envelope, extensions={**envelope.extensions, TRACEPARENT: traceparent(span)})
            publisher.publish(traced, **kwargs)
        self._count_event(traced)
        return traced

    # --- metrics --------------------------------------------------------------------------------------
    def check_done(self, record: Mapping[str, Any], seconds: float) -> None:
        monitor = str(record.get("monitor"))
        self.checks.add(1, {"monitor": monitor, "status": str(record.get("status"))})
        self.check_duration.record(seconds, {"monitor": monitor})
        breached = set(record.get("breached_signals") or [])
        for signal in sorted({str(f.get("signal")) for f in record.get("findings") or []}):
            self.verdicts.add(1, {"monitor": monitor, "signal": signal, "breached": signal in breached})

    def delivery(self, consumer: str, outcome: str) -> None:
        self.deliveries.add(1, {"consumer": consumer, "outcome": outcome})

    def deadletter(self, consumer: str, reason: str) -> None:
        self.deadletters.add(1, {"consumer": consumer, "reason": reason})

    def _count_event(self, envelope: Envelope) -> None:
        self.events.add(1, {"type": envelope.type})
        data = envelope.data
        if envelope.type == "mlops.incident.changed.v1":
            self.incidents.add(1, {"monitor": str(data.get("monitor")), "signal": str(data.get("signal")),
                                   "status": str(data.get("status"))})
        elif envelope.type in _STAGES:
            self.retrains.add(1, {"endpoint": str(data.get("endpoint")), "stage": _STAGES[envelope.type]})


class TracedPublisher:
    """core.ports.Publisher that publishes through Observability.publish (traceparent + counts)."""

    def __init__(self, inner: Publisher, observability: Observability) -> None:
        self.inner, self.observability = inner, observability

    def publish(self, envelope: Envelope, **kwargs: Any) -> None:
        self.observability.publish(self.inner, envelope, **kwargs)


# --- trace context -----------------------------------------------------------------------------------
def event_attributes(envelope: Envelope) -> dict[str, Any]:
    return _attrs({"cloudevents.event_id": envelope.id, "cloudevents.event_type": envelope.type,
                   "cloudevents.event_subject": envelope.subject, "mlops.correlationid": envelope.correlationid,
                   "mlops.causationid": envelope.causationid, "messaging.message.id": envelope.id})


def traceparent(span: Any) -> str:
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    return carrier[TRACEPARENT]


def parent_context(envelope: Envelope) -> Any:
    """The context of the span that published `envelope`: from its traceparent, else derived from its ids."""
    header = envelope.extensions.get(TRACEPARENT)
    if isinstance(header, str):
        found = TraceContextTextMapPropagator().extract({TRACEPARENT: header})
        if trace.get_current_span(found).get_span_context().is_valid:
            return found
    trace_id = _hash(envelope.correlationid or envelope.id, 32)
    span_id = _hash(envelope.causationid or envelope.id, 16)
    parent = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(1))
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


def _hash(text: str, hex_digits: int) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:hex_digits], 16) or 1


def _attrs(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != ""}


# --- set-up ------------------------------------------------------------------------------------------
_lock = threading.Lock()
_process: dict[str, Observability] = {}


def for_process(mode: str = "auto", connection_string: str | None = None, *, service: str = "mlops-monitoring",
                aad: bool = False) -> Observability:
    """The process's Observability for `mode` (one per process: providers own threads and global state)."""
    if mode not in MODES:
        from core.errors import ConfigurationError

        raise ConfigurationError(f"MLOPS_OTEL_EXPORT must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "auto":
        mode = "azure" if connection_string else "log"
    with _lock:
        if mode not in _process:
            _process[mode] = _build(mode, connection_string, service, aad)
        return _process[mode]


def _build(mode: str, connection_string: str | None, service: str, aad: bool) -> Observability:
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.name": service})
    if mode == "off":
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.trace import NoOpTracerProvider

        return Observability(NoOpTracerProvider(), NoOpMeterProvider())
    if mode == "azure":
        if not connection_string:
            from core.errors import ConfigurationError

            raise ConfigurationError("MLOPS_OTEL_EXPORT=azure needs APPLICATIONINSIGHTS_CONNECTION_STRING")
        from azure.monitor.opentelemetry import configure_azure_monitor
        from opentelemetry import metrics

        extra: dict[str, Any] = {}
        if aad:  # local authentication disabled on the App Insights resource: the app's identity sends
            from azure.identity import DefaultAzureCredential

            extra["credential"] = DefaultAzureCredential()
        configure_azure_monitor(connection_string=connection_string, logger_name="mlops", resource=resource,
                                enable_live_metrics=False, **extra)
        return Observability(trace.get_tracer_provider(), metrics.get_meter_provider())
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    spans, numbers = (ConsoleSpanExporter(), ConsoleMetricExporter()) if mode == "console" else \
        (LogSpanExporter(), LogMetricExporter())
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = PeriodicExportingMetricReader(numbers, export_interval_millis=60_000)
    return Observability(tracer_provider, MeterProvider(resource=resource, metric_readers=[reader]))


class LogSpanExporter(SpanExporter):
    """One log line per finished span: name, duration, trace and span ids, the event it handled."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            ctx, attrs = span.context, span.attributes or {}
            millis = (span.end_time - span.start_time) / 1e6 if span.end_time and span.start_time else 0.0
            log.info("span %s %.1f ms trace=%032x span=%016x parent=%s status=%s event=%s", span.name, millis,
                     ctx.trace_id, ctx.span_id, f"{span.parent.span_id:016x}" if span.parent else "-",
                     span.status.status_code.name, attrs.get("cloudevents.event_id", "-"))
        return SpanExportResult.SUCCESS


class LogMetricExporter(MetricExporter):
    """Every minute, one log line of the instruments that moved (cumulative), for a quick look."""

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **_: Any) -> MetricExportResult:
        totals = {}
        for resource in metrics_data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None and getattr(point, "count", 0):
                            value = round(point.sum / point.count, 3)  # a histogram: its mean
                        if value:
                            labels = ",".join(f"{k}={v}" for k, v in sorted(point.attributes.items()))
                            totals[f"{metric.name}{{{labels}}}"] = value
        if totals:
            logging.getLogger("mlops.metrics").info("metrics %s", json.dumps(totals, sort_keys=True))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **_: Any) -> None:
        return None


class JsonLogFormatter(logging.Formatter):
    """Structured log lines: time, level, logger, message and the current trace and span ids."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                               + f".{int(record.msecs):03d}Z", "level": record.levelname, "logger": record.name,
                               "message": record.getMessage()}
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            doc.update(trace_id=f"{ctx.trace_id:032x}", span_id=f"{ctx.span_id:016x}")
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)
