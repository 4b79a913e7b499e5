"""The check handler: one monitor, one window -> findings, a stored record, a report, incidents, events.

Idempotent: the (monitor, window) claim makes a second delivery a no-op once the first finished; a
retry after a crash recomputes the same ids (check, incidents, events), so repeats are absorbed by
the alert tracker, the store and the bus's duplicate detection.

Late labels: ground truth arrives `spec.label.lag` after the request, so performance is evaluated on
the window shifted back by that lag (fetched separately), whose labels have had time to arrive; the
check record names that window as `performance_window`.
"""
from __future__ import annotations

import hashlib
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from core.clock import Clock
from core.errors import ConcurrencyConflict, ValidationFailed
from core.events import Envelope, event_id
from core.ports import Publisher, ReportStore, StateStore, TelemetrySource
from core.records import CHECK, CLAIM, claim_window, put, window_done
from core.types import EndpointRef, Finding, TelemetryBatch, Window, iso, parse_time
from monitors.alerts import OPENED, UPDATED, AlertPolicy, IncidentChange
from monitors.rebaseline import active_reference, not_ready
from monitors.report import check_document, finding_json, save_check_report
from monitors.schedule import check_requested, complete_window, window_at
from monitors.signals.suite import FittedSuite, build_suite, fit_suite
from monitors.spec import MonitorSpec, SpecRepository

CHECK_REQUESTED = "mlops.check.requested.v1"
DRIFT_SIGNALS = ("data_drift", "prediction_drift")


class EvaluatorCache:
    """Fitted evaluators per (monitor, reference fingerprint, spec digest), kept for the process's life."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str, str], FittedSuite] = OrderedDict()
        self._lock = threading.Lock()
        self.fits = 0  # how many times a suite was fitted (observable: a cache hit does not fit)

    def get_or_fit(self, key: tuple[str, str, str], fit: Callable[[], FittedSuite]) -> FittedSuite:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        suite = fit()  # outside the lock: fitting may take seconds; a rare double fit is harmless
        with self._lock:
            self.fits += 1
            self._entries[key] = suite
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return suite


@dataclass(frozen=True)
class CheckDeps:
    store: StateStore
    publisher: Publisher
    telemetry: TelemetrySource
    specs: SpecRepository
    profiles: Any  # monitors.drift.profile.ProfileCache
    reports: ReportStore
    clock: Clock
    base_dir: Path
    instance: str = "local"
    evaluators: EvaluatorCache = field(default_factory=EvaluatorCache)
    references: Any = None  # monitors.reference.ReferenceLoader; None: file references only


def run_check(envelope: Envelope, deps: CheckDeps) -> dict | None:
    """Handle mlops.check.requested.v1; returns the check record, or None if the window is done or held."""
    if envelope.type != CHECK_REQUESTED:
        raise ValidationFailed(f"run_check handles {CHECK_REQUESTED}, not {envelope.type}", field="type")
    window = _window(envelope.data)
    spec = deps.specs.get(str(envelope.data["monitor"]))  # NotFound: permanent
    # One owner per delivery, not per process: two deliveries of one window in one process must not
    # both pass the claim (claim_window lets an owner re-take its own running claim).
    owner = f"{deps.instance}/{uuid.uuid4()}"
    if not claim_window(deps.store, spec.name, window, owner, deps.clock.now()):
        return None
    try:
        return _check(envelope, spec, window, deps)
    except BaseException:
        _release(deps.store, spec.name, window, owner)  # let a retry (any instance) start at once
        raise


def request_check(monitor: str, deps: CheckDeps, *, window: Window | None = None,
                  reason: str = "http", force: bool = False) -> Envelope | None:
    """Publish mlops.check.requested.v1 for `window` (default: the latest complete one) and return it.

    The event id is the timer's for the same window, so an HTTP request and a tick dedupe on the bus.
    A window already checked is not requested again (None is returned) unless `force`: then its claim is
    reopened and the request gets an id of its own, so neither the claim nor the bus's duplicate detection
    drops it; the check record is replaced by the new run's, and incidents are not re-announced for it.
    """
    spec = deps.specs.get(monitor)
    problem = not_ready(spec, deps.store, deps.base_dir)
    if problem:
        raise ValidationFailed(f"monitor {spec.name} cannot be checked: {problem}", field="monitor")
    now = deps.clock.now()
    window = window or latest_complete_window(spec, now)
    complete_at = window.end + spec.window.lateness
    if complete_at > now:  # a check marks its window done: a partial window would never be checked again
        raise ValidationFailed(f"window {window.key()} of {spec.name} is not complete until {iso(complete_at)} "
                               f"(window end + lateness {spec.window.lateness})", field="window")
    envelope = check_requested(spec.name, window, now, reason=reason)
    if window_done(deps.store, spec.name, window):
        if not force:
            return None
        reopen_window(deps.store, spec.name, window)
        envelope = replace(envelope, id=event_id("check.requested", spec.name, window.key(), "rerun", iso(now)),
                           data={**envelope.data, "reason": f"{reason} (re-run)"})
    deps.publisher.publish(envelope)
    return envelope


def reopen_window(store: StateStore, monitor: str, window: Window) -> None:
    """Drop a done window's claim so one more check can take it (the watermark does not move back)."""
    key = f"{monitor}/{window.key()}"
    doc = store.get(CLAIM, key)
    if doc is not None and doc.data.get("state") == "done":
        store.delete(CLAIM, key, doc.etag)


def html_report(monitor: str, window: Window, deps: CheckDeps) -> str:
    """On request: an evidently HTML report of one window against the reference, saved beside the JSON one."""
    from monitors.report import render_html, report_name

    spec = deps.specs.get(monitor)
    batch = deps.telemetry.fetch(EndpointRef(spec.endpoint.name, spec.endpoint.deployment), window)
    active = active_reference(spec, deps.store, deps.base_dir)
    reference = open_reference(active, deps)
    html = render_html(reference.frame(), batch.frame, spec)
    return deps.reports.put(report_name(spec.name, window, "html"), html, "text/html")


def open_reference(active: dict, deps: CheckDeps) -> Any:
    from monitors.reference import load_reference

    if deps.references is not None:
        return deps.references.load(active["uri"], active["base_dir"])
    return load_reference(active["uri"], base_dir=active["base_dir"])


def latest_complete_window(spec: MonitorSpec, now: datetime) -> Window:
    """The last window of the spec's grid whose end plus lateness has passed."""
    current = window_at(now - spec.window.lateness, size=spec.window.size, origin=spec.window.origin)
    return Window(current.start - spec.window.size, current.start)


def _check(envelope: Envelope, spec: MonitorSpec, window: Window, deps: CheckDeps) -> dict:
    endpoint = EndpointRef(spec.endpoint.name, spec.endpoint.deployment)
    batch = deps.telemetry.fetch(endpoint, window)  # TelemetryUnavailable propagates: retryable
    active = active_reference(spec, deps.store, deps.base_dir)
    suite = fitted_suite(spec, deps, active)
    findings = [f for evaluator in suite.current for f in evaluator.evaluate(batch)]
    performance_window = None
    if suite.performance is not None and spec.label is not None:
        performance_window = shifted(window, spec.label.lag)
        labelled = batch if performance_window == window else deps.telemetry.fetch(endpoint, performance_window)
        findings += suite.performance.evaluate(labelled)
    check_id = event_id("check", spec.name, window.key())
    model_version = _model_version(batch)
    # An ad-hoc window off the spec's grid is checked and recorded, but is not a vote in the alert episodes:
    # it would overlap grid windows and make the tracker skip them as "older".
    on_grid = window == window_at(window.start, size=spec.window.size, origin=spec.window.origin)
    changes = AlertPolicy(spec.alert).apply(deps.store, spec.name, window, findings, check_id=check_id,
                                            model_version=model_version) if on_grid else []
    status = "empty" if batch.rows == 0 else ("breached" if any(f.breached for f in findings) else "ok")
    doc = check_document(check_id=check_id, spec=spec, window=window, findings=findings, rows=batch.rows,
                         rejected=batch.rejected, status=status, extra={
                             "reason": envelope.data.get("reason"), "requested_by": envelope.id,
                             "completed_at": iso(deps.clock.now()), "reference_fingerprint": suite.fingerprint,
                             "reference_rows": suite.reference_rows, "model_version": model_version,
                             "reference": {"uri": active["uri"], "model_version": active["model_version"]},
                             "performance_window": performance_window.to_json() if performance_window else None,
                             "alerting": "applied" if on_grid else "skipped: the window is not on the monitor's grid",
                             "incidents": [_incident_ref(c) for c in changes]})
    doc["report"] = save_check_report(deps.reports, doc, window)
    put(deps.store, CHECK, check_id, doc)
    _publish(envelope, spec, window, doc, findings, changes, deps)
    complete_window(deps.store, spec.name, window, check_id, origin=spec.window.origin, size=spec.window.size)
    return doc


def fitted_suite(spec: MonitorSpec, deps: CheckDeps, active: dict[str, Any] | None = None) -> FittedSuite:
    """Fitted once per (monitor, reference fingerprint, spec) per process; profiles also cached on disk.

    `active`: the reference in use (monitors.rebaseline.active_reference); a promotion changes it, and
    with it the fingerprint, so the suite is refitted once per model version."""
    active = active or active_reference(spec, deps.store, deps.base_dir)
    reference = open_reference(active, deps)
    digest = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]
    key = (spec.name, reference.fingerprint, digest)

    def fit() -> FittedSuite:
        suite = build_suite(spec, profiles=deps.profiles, fingerprint=reference.fingerprint)
        return fit_suite(suite, reference.frame(), reference.fingerprint)

    return deps.evaluators.get_or_fit(key, fit)


def shifted(window: Window, lag: timedelta) -> Window:
    return Window(window.start - lag, window.end - lag)


def _publish(cause: Envelope, spec: MonitorSpec, window: Window, doc: dict, findings: list[Finding],
             changes: list[IncidentChange], deps: CheckDeps) -> None:
    now, check_id = deps.clock.now(), doc["check_id"]
    span = {"window_start": iso(window.start), "window_end": iso(window.end)}
    deps.publisher.publish(cause.caused("mlops.check.completed.v1", {
        "monitor": spec.name, "check_id": check_id, **span, "status": doc["status"], "rows": doc["rows"],
        "dataset_drift": doc["summary"]["dataset_drift"], "drift_share": doc["summary"]["drift_share"],
        "policy": doc["summary"]["policy"], "model_version": doc["model_version"],
        "breached_signals": doc["breached_signals"], "report": doc["report"],
        "incidents": [c.incident_id for c in changes]}, id=event_id("check.completed", check_id), time=now))
    for change in changes:
        data = {**_incident_ref(change), "monitor": spec.name, "endpoint": spec.endpoint.name,
                "deployment": spec.endpoint.deployment, "model_version": change.incident.get("model_version"),
                **span, "check_id": check_id, "breached": change.incident.get("breached", []),
                "opened_window": change.incident.get("opened_window"), "windows": change.incident.get("windows"),
                "report": doc["report"]}
        deps.publisher.publish(cause.caused("mlops.incident.changed.v1", data, time=now, subject=spec.name,
                                            id=event_id("incident.changed", change.incident_id, change.status,
                                                        window.key())))
        if change.signal in DRIFT_SIGNALS and change.status in (OPENED, UPDATED):
            deps.publisher.publish(cause.caused("mlops.drift.detected.v1", _drift_evidence(
                spec, change, findings, doc, span), id=event_id("drift.detected", change.incident_id, window.key()),
                subject=spec.name, time=now))


def _drift_evidence(spec: MonitorSpec, change: IncidentChange, findings: list[Finding], doc: dict,
                    span: dict) -> dict[str, Any]:
    mine = [f for f in findings if f.signal == change.signal]
    dataset = next((f for f in mine if f.name == "dataset"), None)
    return {"monitor": spec.name, "check_id": doc["check_id"], "incident_id": change.incident_id,
            "status": change.status, "signal": change.signal, "severity": change.severity.value,
            "endpoint": spec.endpoint.name, "deployment": spec.endpoint.deployment, "model": spec.model.name,
            "model_version": doc["model_version"], **span,
            "policy": dataset.details.get("policy") if dataset else None,
            "drift_share": dataset.statistic if dataset else None,
            "drifted_features": sorted(f.name for f in mine if f.breached and f.name != "dataset"),
            "findings": [finding_json(f) for f in mine], "reference_fingerprint": doc["reference_fingerprint"],
            "retrain_allowed": spec.retrain.on_drift, "report": doc["report"]}


def _incident_ref(change: IncidentChange) -> dict[str, Any]:
    return {"incident_id": change.incident_id, "signal": change.signal, "status": change.status,
            "severity": change.severity.value}


def _model_version(batch: TelemetryBatch) -> str | None:
    """The model version that served most of the window's requests."""
    frame = batch.frame
    if "model_version" not in frame or batch.rows == 0:
        return None
    counts = frame["model_version"].dropna().astype(str).value_counts()
    return str(counts.index[0]) if len(counts) else None


def _window(data: Any) -> Window:
    try:
        return Window(parse_time(str(data["window_start"])), parse_time(str(data["window_end"])))
    except (KeyError, ValueError) as exc:
        raise ValidationFailed(f"check request has no valid window_start/window_end: {exc}",
                               field="window_start") from exc


def _release(store: StateStore, monitor: str, window: Window, owner: str) -> None:
    """Drop our running claim after a failure; key layout as in core.records.claim_window."""
    key = f"{monitor}/{window.key()}"
    doc = store.get(CLAIM, key)
    if doc is None or doc.data.get("owner") != owner or doc.data.get("state") != "running":
        return
    try:
        store.delete(CLAIM, key, doc.etag)
    except ConcurrencyConflict:
        return  # someone else took it over meanwhile: theirs now
