"""The composition root: reads settings once, builds adapters lazily, hands them to the handlers.

The only module that imports from every area. Azure adapters are chosen when their setting is
present; otherwise the embedded defaults run (SQLite bus and state, local telemetry store, local
runner, registry and endpoint). Nothing is built at import time (cold start).
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from core.clock import Clock, parse_clock
from core.errors import ConfigurationError, NotFound, PermanentError
from core.settings import Settings
from core.types import Window, parse_time

log = logging.getLogger("mlops.bootstrap")


class Container:
    """Every adapter and handler entry point, built on first use and kept for the process."""

    def __init__(self, settings: Settings, clock: Clock | None = None, observability: Any = None) -> None:
        self.settings = settings
        self._clock = clock
        self._observability = observability
        self._told: set[tuple[str, str]] = set()

    @cached_property
    def observability(self):
        """Traces, metrics and logs of the service itself (core.observability); tests hand in-memory ones."""
        if self._observability is not None:
            return self._observability
        from core.observability import for_process

        s = self.settings
        return for_process(s.otel_export, s.appinsights_connection_string or None,
                           aad="AAD" in (s.appinsights_authentication or "").upper())

    # --- time, bus, state -------------------------------------------------------------------
    @cached_property
    def clock(self) -> Clock:
        return self._clock or parse_clock(self.settings.clock)

    @cached_property
    def data_dir(self) -> Path:
        path = Path(self.settings.data_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @cached_property
    def bus(self):
        """The local SQLite bus (only when Service Bus is not configured)."""
        from core.localbus import SqliteBus, provision

        bus = SqliteBus.from_host_json(self.data_dir / "bus.sqlite", Path(__file__).with_name("host.json"),
                                       clock=self.clock)
        provision(bus)
        return bus

    @cached_property
    def publisher(self):
        """Every event leaves through here: stamped with its trace context and counted."""
        from core.observability import TracedPublisher

        if self.settings.servicebus_namespace:
            from core.servicebus import ServiceBusPublisher

            return TracedPublisher(ServiceBusPublisher(self.settings.servicebus_namespace, credential=self.credential),
                                   self.observability)
        from core.localbus import SqliteBusPublisher

        return TracedPublisher(SqliteBusPublisher(self.bus), self.observability)

    @cached_property
    def store(self):
        if self.settings.tables_endpoint:
            from core.state_tables import TableStateStore

            return TableStateStore(self.settings.tables_endpoint, credential=self.credential)
        from core.state_sqlite import SqliteStateStore

        return SqliteStateStore(self.data_dir / "state.sqlite")

    @cached_property
    def reports(self):
        if self.settings.blob_endpoint:
            from core.reports import BlobReportStore

            return BlobReportStore(self.settings.blob_endpoint, credential=self.credential)
        from core.reports import FileReportStore

        return FileReportStore(self.data_dir / "reports")

    # --- Azure identity and Azure ML: one credential and one MLClient for the process ----------
    @cached_property
    def credential(self):
        """DefaultAzureCredential (the app's managed identity in Azure), shared by every Azure adapter."""
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    @cached_property
    def ml_client(self):
        """The workspace's MLClient (no network call until an operation); the runner, registry, deployer and
        azureml: references all use this one."""
        if not self.settings.azureml_configured:
            raise ConfigurationError("Azure ML is not configured: set AZUREML_SUBSCRIPTION_ID, "
                                     "AZUREML_RESOURCE_GROUP and AZUREML_WORKSPACE")
        from azure.ai.ml import MLClient  # lazy: about 1.5 s to import

        return MLClient(self.credential, self.settings.azureml_subscription_id,
                        self.settings.azureml_resource_group, self.settings.azureml_workspace)

    @cached_property
    def references(self):
        from monitors.reference import ReferenceLoader

        azureml = self.settings.azureml_configured
        return ReferenceLoader(self.data_dir / "references", ml_client=(lambda: self.ml_client) if azureml else None,
                               credential=lambda: self.credential)

    # --- telemetry --------------------------------------------------------------------------
    @cached_property
    def telemetry_store(self):
        from core.telemetry_store import SqliteTelemetryStore

        return SqliteTelemetryStore(self.data_dir / "telemetry.sqlite")

    @cached_property
    def app_telemetry(self):
        """The app-wide source: Log Analytics when configured, else the local store."""
        if self.settings.log_analytics_workspace_id:
            from monitors.telemetry.loganalytics import LogAnalyticsTelemetrySource

            return LogAnalyticsTelemetrySource(self.settings.log_analytics_workspace_id,
                                               credential=self.credential)
        from monitors.telemetry.local import LocalTelemetrySource

        return LocalTelemetrySource(self.telemetry_store)

    @cached_property
    def telemetry(self):
        """Each endpoint's telemetry where its monitor spec says (e.g. Azure ML's data collector files)."""
        from monitors.telemetry.router import SpecTelemetrySource

        return SpecTelemetrySource(self.specs, self.app_telemetry)

    @cached_property
    def health(self):
        if self.settings.log_analytics_workspace_id:
            return self.app_telemetry  # the Log Analytics source answers deployment health with KQL
        return self.telemetry_store

    # --- monitors ---------------------------------------------------------------------------
    @cached_property
    def specs(self):
        from monitors.spec import SpecRepository

        return SpecRepository(Path(self.settings.monitors_dir))

    @cached_property
    def check_deps(self):
        from monitors.check import CheckDeps
        from monitors.drift.profile import ProfileCache

        return CheckDeps(store=self.store, publisher=self.publisher, telemetry=self.telemetry, specs=self.specs,
                         profiles=ProfileCache(self.data_dir / "profiles"), reports=self.reports, clock=self.clock,
                         references=self.references,
                         base_dir=Path(self.settings.monitors_dir), instance=self.settings.instance,
                         lease=self.settings.check_lease, max_attempts=self.settings.check_max_attempts,
                         request_ttl=self.settings.check_request_ttl, snapshots=self.data_dir / "references",
                         summary_above=self.settings.summary_above_rows or None)

    @cached_property
    def channels(self) -> list:
        """Where messages go: MLOPS_NOTIFY_URLS (apprise URLs), MLOPS_WEBHOOK_URL; the log when neither is set."""
        from monitors.notify import channels_from

        return channels_from(self.settings.notify_url_list(), self.settings.webhook(), self.settings.webhook_format,
                             logging.getLogger("mlops.alerts"))

    def schedule_checks(self):
        """monitors.schedule.TickReport: the requests published and how far behind each monitor still is."""
        from monitors.rebaseline import not_ready
        from monitors.schedule import schedule_checks

        ready = []
        for spec in self.specs.all():
            problem = not_ready(spec, self.store, Path(self.settings.monitors_dir))
            if problem is None:
                ready.append(spec.schedule_entry())
            elif (spec.name, problem) not in self._told:  # once per process: it is listed by /api/monitors too
                self._told.add((spec.name, problem))
                log.warning("monitor %s is not scheduled: %s", spec.name, problem)
        with self.observability.span("timer schedule_checks"):
            tick = schedule_checks(ready, self.store, self.publisher, self.clock.now(),
                                   limit=self.settings.max_windows_per_tick,
                                   request_ttl=self.settings.check_request_ttl)
        announce_catch_up(tick, self.settings.max_windows_per_tick)
        return tick

    def run_check(self, envelope) -> Any:
        import time

        from monitors.check import run_check

        started = time.perf_counter()
        record = run_check(envelope, self.check_deps)
        if record is not None:  # None: the window was done or held by another delivery
            self.observability.check_done(record, time.perf_counter() - started)
        return record

    def rebaseline(self, envelope) -> list[str]:
        from monitors.rebaseline import on_model_promoted

        return on_model_promoted(envelope, self.check_deps)

    def request_check(self, monitor: str, window: Window | None, *, force: bool = False) -> dict[str, Any]:
        """Ask for a check (monitors.check.request_check): a window already checked says so (status
        "already_checked") unless `force`; a window given up after failed attempts is re-run."""
        from core.records import CHECK
        from monitors.check import request_check

        with self.observability.span("http request_check", monitor=monitor):
            asked = request_check(monitor, self.check_deps, window=window, reason="http", force=force)
        answer = {"check_id": asked["check_id"], "monitor": asked["monitor"], "window": asked["window"],
                  "event_id": asked["event_id"], "generation": asked["generation"]}
        if asked["state"] in ("requested", "running", "pending"):
            return {**answer, "status": "requested" if asked["state"] != "running" else "running", "forced": force}
        done = self.store.get(CHECK, asked["check_id"])
        result = dict(done.data) if done else {}
        key = f"{asked['window']['start']} - {asked['window']['end']}"
        return {**answer, "status": "already_checked", "result": result.get("status"),
                "checked_at": result.get("completed_at"),
                "message": f"window {key} of {asked['monitor']} was already checked"
                           f"{' (' + str(result.get('status')) + ')' if result else ''}; nothing was requested. "
                           "POST /api/checks?force=true to check it again."}

    def get_check(self, check_id: str) -> dict[str, Any]:
        """The check record; while its window is asked for again (forced, or a failed window re-run) or being
        checked, "rerun" says so (requested | running)."""
        from core.records import CHECK, require
        from monitors import windows

        record = dict(require(self.store, CHECK, check_id).data)
        window = Window(parse_time(record["window"]["start"]), parse_time(record["window"]["end"]))
        state = windows.load(self.store, record["monitor"], window).state
        if state == windows.PENDING:
            record["rerun"] = "requested"
        elif state in (windows.RUNNING, windows.PUBLISHING):
            record["rerun"] = "running"
        return record

    def check_report(self, check_id: str) -> bytes | dict[str, Any]:
        """The stored HTML report of a check, or (not built yet) the receipt of a request to build it."""
        from monitors.check_report import request_report, stored_report

        html = stored_report(check_id, self.check_deps)
        return html if html is not None else request_report(check_id, self.check_deps)

    def build_report(self, check_id: str) -> bytes:
        """Build (or rebuild) a check's report now, from what the check recorded; returns the HTML."""
        from monitors.check_report import build_report, stored_report

        build_report(check_id, self.check_deps)
        return stored_report(check_id, self.check_deps) or b""

    @cached_property
    def result_sinks(self) -> list:
        """Where each check's results go besides the state store (Azure Monitor custom metrics)."""
        sinks = []
        s = self.settings
        if s.metrics_region:
            if not s.azureml_configured:
                raise ConfigurationError("MLOPS_METRICS_REGION needs AZUREML_SUBSCRIPTION_ID, AZUREML_RESOURCE_GROUP "
                                         "and AZUREML_WORKSPACE: the metrics go on the workspace's online endpoints")
            from monitors.results import AzureMonitorCustomMetrics, endpoint_resource_id

            sinks.append(AzureMonitorCustomMetrics(s.metrics_region, lambda endpoint: endpoint_resource_id(
                s.azureml_subscription_id, s.azureml_resource_group, s.azureml_workspace, endpoint)))
        if s.evidently_workspace:
            from monitors.results import EvidentlySnapshots

            sinks.append(EvidentlySnapshots(s.evidently_workspace, self._window_frames))
        return sinks

    def _window_frames(self, monitor: str, window: Window) -> tuple:
        """(reference frame, the window's telemetry frame, spec) of a monitor, as its checks read them."""
        from core.types import EndpointRef
        from monitors.rebaseline import active_reference
        from monitors.reference import load_reference

        spec = self.specs.get(monitor)
        batch = self.telemetry.fetch(EndpointRef(spec.endpoint.name, spec.endpoint.deployment), window)
        active = active_reference(spec, self.store, Path(self.settings.monitors_dir))
        return load_reference(active["uri"], base_dir=active["base_dir"]).frame(), batch.frame, spec

    def publish_results(self, envelope) -> int:
        """mlops.check.completed.v1 -> the check's results to every sink; the count of series sent."""
        from core.records import CHECK

        if not self.result_sinks:
            return 0
        found = self.store.get(CHECK, str(envelope.data["check_id"]))
        if found is None:
            raise NotFound(f"check {envelope.data['check_id']} is not recorded")
        return sum(sink.publish(found.data) for sink in self.result_sinks)

    def audit(self, envelope) -> None:
        from core.records import record_event

        record_event(self.store, envelope)

    def notify(self, envelope) -> None:
        from monitors.notify import handle_event

        handle_event(envelope, self.channels, self.store, clock=self.clock)

    def send_digest(self) -> int:
        from monitors.notify import send_digest

        return send_digest(self.channels, self.store, clock=self.clock)

    # --- retrain ----------------------------------------------------------------------------
    @cached_property
    def retrain_deps(self):
        from retrain.wiring import build_deps

        return build_deps(self)

    def on_retrain_event(self, envelope) -> None:
        from retrain.handlers import on_retrain_event

        on_retrain_event(envelope, self.retrain_deps)

    def on_deploy_event(self, envelope) -> None:
        from retrain.handlers import on_deploy_event

        on_deploy_event(envelope, self.retrain_deps)

    def track_runs(self) -> None:
        from retrain.handlers import track_runs

        with self.observability.span("timer track_retrains"):
            track_runs(self.retrain_deps)

    def request_retrain(self, endpoint: str, reason: str, *, window: Window | None, idempotency_key: str | None,
                        caller: str) -> dict[str, Any]:
        from retrain.handlers import request_retrain

        with self.observability.span("http request_retrain", endpoint=endpoint):
                return request_retrain(endpoint, reason, trigger={"kind": "http", "caller": caller},
                                   idempotency_key=idempotency_key, window=window, deps=self.retrain_deps)

    def get_run(self, run_id: str) -> dict[str, Any]:
        from retrain.handlers import get_run

        return get_run(run_id, self.retrain_deps)

    # --- read side: the list APIs and the dashboard --------------------------------------------
    def list_monitors(self, page) -> dict[str, Any]:
        from monitors.views import monitors_page

        return monitors_page(self.specs, self.store, page, Path(self.settings.monitors_dir))

    def list_checks(self, page, *, monitor: str | None, start: datetime | None, end: datetime | None,
                    status: str | None) -> dict[str, Any]:
        from monitors.views import checks_page

        names = [self.specs.get(monitor).name] if monitor else self.specs.names()
        return checks_page(self.store, names, page, start=start, end=end, status=status).to_json()

    def list_incidents(self, page, *, state: str | None, monitor: str | None) -> dict[str, Any]:
        from monitors.views import incidents_page

        return incidents_page(self.store, page, state=state, monitor=monitor).to_json()

    def monitor_timeline(self, monitor: str, *, start: datetime | None, end: datetime | None) -> dict[str, Any]:
        from monitors.views import timeline

        return timeline(self.specs.get(monitor), self.store, start=start, end=end)

    def list_runs(self, page, *, endpoint: str | None, state: str | None) -> dict[str, Any]:
        from retrain.views import runs_page

        return runs_page(self.store, page, endpoint=endpoint, state=state).to_json()

    def list_deployments(self) -> dict[str, Any]:
        from retrain.views import deployments

        endpoints = {spec.endpoint.name for spec in self.specs.all()} | set(self.retrain_deps.targets)
        return {"items": deployments(self.retrain_deps.deployer, endpoints)}

    # --- poison messages ----------------------------------------------------------------------
    def reject(self, msg, consumer: str, exc: PermanentError) -> None:
        """Dead-letter a message that can never succeed, with its reason.

        Locally devhost settles on the bus, so re-raising lets it dead-letter with exc.reason. In Azure the
        standard trigger cannot settle, so the message and reason are kept in the state store and the
        message completes instead of burning retries.
        """
        self.observability.deadletter(consumer, exc.reason)
        if not self.settings.servicebus_namespace:
            raise exc
        from core.records import put

        body = msg.get_body()
        put(self.store, "deadletter", f"{consumer}/{msg.message_id or 'no-id'}",
            {"reason": exc.reason, "description": str(exc), "consumer": consumer,
             "body": body[:8192].decode("utf-8", "replace"), "at": self.clock.now().isoformat()})
        log.error("%s: dead-lettered message %s: %s: %s", consumer, msg.message_id, exc.reason, exc)

    def retry_later(self, msg, consumer: str, exc: BaseException) -> None:
        """A delivery failed and will be retried; the caller re-raises so the host abandons the message.

        Locally devhost abandons it with a backoff and keeps the error for its dead-letter. In Azure the
        Functions host abandons at once and Service Bus dead-letters after maxDeliveryCount with a generic
        reason: so the last delivery's real error is kept in the state store, and a bounded pause before
        the abandon spaces the redeliveries out.
        """
        if not self.settings.servicebus_namespace:
            return
        import time

        from core.records import put
        from core.retry import retry_delay
        from core.servicebus import host_settings

        count = int(getattr(msg, "delivery_count", None) or 1)
        if count >= host_settings(Path(__file__).with_name("host.json")).get("max_delivery_count", 10):
            put(self.store, "deadletter", f"{consumer}/{msg.message_id or 'no-id'}",
                {"reason": "MaxDeliveryCountExceeded", "description": f"{type(exc).__name__}: {exc}"[:2000],
                 "consumer": consumer, "deliveries": count, "body": msg.get_body()[:8192].decode("utf-8", "replace"),
                 "at": self.clock.now().isoformat()})
        time.sleep(min(retry_delay(exc, count, self.clock.now()).total_seconds(), 30.0))


def announce_catch_up(tick, limit: int) -> None:
    """A monitor behind by more than one window says how far it is catching up (bounded per tick)."""
    by_monitor: dict[str, list] = {}
    for envelope in tick:
        by_monitor.setdefault(str(envelope.data["monitor"]), []).append(envelope)
    for monitor, requested in by_monitor.items():
        behind = tick.behind.get(monitor, 0)
        if len(requested) > 1 or behind:
            first, last = requested[0].data, requested[-1].data
            log.warning("monitor %s is catching up: %d windows requested this tick (%s to %s)%s", monitor,
                        len(requested), first["window_start"], last["window_end"],
                        f"; at most {limit} per tick, up to {behind} more follow on the next ticks" if behind else "")


_lock = threading.Lock()
_container: Container | None = None


def container() -> Container:
    global _container
    with _lock:
        if _container is None:
            _container = Container(load_settings())
        return _container


def configure(settings: Settings | None = None, *, clock: Clock | None = None, observability: Any = None) -> Container:
    """Replace the process's container (tests, demo, devhost with a simulated clock)."""
    global _container
    with _lock:
        _container = Container(settings or load_settings(), clock, observability)
        return _container


def load_settings() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        names = ", ".join(str(e["loc"][0]) if e["loc"] else e["msg"] for e in exc.errors())
        raise ConfigurationError(f"invalid settings ({names}): {exc}") from exc


def now() -> datetime:
    return container().clock.now()
