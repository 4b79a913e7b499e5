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

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self._clock = clock

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
        if self.settings.servicebus_namespace:
            from core.servicebus import ServiceBusPublisher

            return ServiceBusPublisher(self.settings.servicebus_namespace)
        from core.localbus import SqliteBusPublisher

        return SqliteBusPublisher(self.bus)

    @cached_property
    def store(self):
        if self.settings.tables_endpoint:
            from core.state_tables import TableStateStore

            return TableStateStore(self.settings.tables_endpoint)
        from core.state_sqlite import SqliteStateStore

        return SqliteStateStore(self.data_dir / "state.sqlite")

    @cached_property
    def reports(self):
        if self.settings.blob_endpoint:
            from core.reports import BlobReportStore

            return BlobReportStore(self.settings.blob_endpoint)
        from core.reports import FileReportStore

        return FileReportStore(self.data_dir / "reports")

    # --- telemetry --------------------------------------------------------------------------
    @cached_property
    def telemetry_store(self):
        from core.telemetry_store import SqliteTelemetryStore

        return SqliteTelemetryStore(self.data_dir / "telemetry.sqlite")

    @cached_property
    def telemetry(self):
        if self.settings.log_analytics_workspace_id:
            from monitors.telemetry.loganalytics import LogAnalyticsTelemetrySource

            return LogAnalyticsTelemetrySource(self.settings.log_analytics_workspace_id)
        from monitors.telemetry.local import LocalTelemetrySource

        return LocalTelemetrySource(self.telemetry_store)

    @cached_property
    def health(self):
        if self.settings.log_analytics_workspace_id:
            return self.telemetry  # the Log Analytics source answers deployment health with KQL
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
                         base_dir=Path(self.settings.monitors_dir), instance=self.settings.instance)

    @cached_property
    def notifier(self):
        from monitors.notify import LogNotifier, WebhookNotifier

        if self.settings.webhook_url:
            return WebhookNotifier(self.settings.webhook_url, self.settings.webhook_format)
        return LogNotifier(logging.getLogger("mlops.alerts"))

    def schedule_checks(self) -> list:
        from monitors.schedule import schedule_checks

        return schedule_checks([spec.schedule_entry() for spec in self.specs.all()], self.store, self.publisher,
                               self.clock.now())

    def run_check(self, envelope) -> Any:
        from monitors.check import run_check

        return run_check(envelope, self.check_deps)

    def rebaseline(self, envelope) -> list[str]:
        from monitors.rebaseline import on_model_promoted

        return on_model_promoted(envelope, self.check_deps)

    def request_check(self, monitor: str, window: Window | None) -> dict[str, Any]:
        from core.events import event_id
        from monitors.check import request_check

        envelope = request_check(monitor, self.check_deps, window=window, reason="http")
        start, end = parse_time(envelope.data["window_start"]), parse_time(envelope.data["window_end"])
        check_id = event_id("check", monitor, Window(start, end).key())
        return {"check_id": check_id, "event_id": envelope.id, "monitor": monitor,
                "window": {"start": envelope.data["window_start"], "end": envelope.data["window_end"]}}

    def get_check(self, check_id: str) -> dict[str, Any]:
        from core.records import CHECK, require

        return dict(require(self.store, CHECK, check_id).data)

    def check_report(self, check_id: str) -> bytes:
        """Render (once) and return the evidently HTML report of a recorded check's window."""
        from monitors.check import html_report
        from monitors.report import report_name

        record = self.get_check(check_id)
        window = Window(parse_time(record["window"]["start"]), parse_time(record["window"]["end"]))
        name = report_name(record["monitor"], window, "html")
        try:
            return self.reports.get(name)
        except NotFound:
            html_report(record["monitor"], window, self.check_deps)
            return self.reports.get(name)

    def notify(self, envelope) -> None:
        from monitors.notify import handle_incident_changed

        handle_incident_changed(envelope, self.notifier, self.store)

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

        track_runs(self.retrain_deps)

    def request_retrain(self, endpoint: str, reason: str, *, window: Window | None, idempotency_key: str | None,
                        caller: str) -> dict[str, Any]:
        from retrain.handlers import request_retrain

        return request_retrain(endpoint, reason, trigger={"kind": "http", "caller": caller},
                               idempotency_key=idempotency_key, window=window, deps=self.retrain_deps)

    def get_run(self, run_id: str) -> dict[str, Any]:
        from retrain.handlers import get_run

        return get_run(run_id, self.retrain_deps)

    # --- poison messages ----------------------------------------------------------------------
    def reject(self, msg, consumer: str, exc: PermanentError) -> None:
        """Dead-letter a message that can never succeed, with its reason.

        Locally devhost settles on the bus, so re-raising lets it dead-letter with exc.reason. In Azure the
        standard trigger cannot settle, so the message and reason are kept in the state store and the
        message completes instead of burning retries.
        """
        if not self.settings.servicebus_namespace:
            raise exc
        from core.records import put

        body = msg.get_body()
        put(self.store, "deadletter", f"{consumer}/{msg.message_id or 'no-id'}",
            {"reason": exc.reason, "description": str(exc), "consumer": consumer,
             "body": body[:8192].decode("utf-8", "replace"), "at": self.clock.now().isoformat()})
        log.error("%s: dead-lettered message %s: %s: %s", consumer, msg.message_id, exc.reason, exc)


_lock = threading.Lock()
_container: Container | None = None


def container() -> Container:
    global _container
    with _lock:
        if _container is None:
            _container = Container(load_settings())
        return _container


def configure(settings: Settings | None = None, *, clock: Clock | None = None) -> Container:
    """Replace the process's container (tests, demo, devhost with a simulated clock)."""
    global _container
    with _lock:
        _container = Container(settings or load_settings(), clock)
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
