"""The check handler: one monitor, one window -> findings, a stored record, a report, incidents, events.

Exactly once per window (monitors.windows): the delivery takes the window's lease, computes and stores the
record, saves the events with the window's state (an outbox), relays them, and marks the window done. A
delivery that finds the window done completes; one that finds it held by another live message lets the
message come back (WorkHeld); one that dies is taken over by its own redelivery. Ids are deterministic
(check, incidents, events), so a relay repeated after a crash is absorbed by the bus's duplicate detection.

Late labels: ground truth arrives `spec.label.lag` after the request, so performance is evaluated on
the window shifted back by that lag (fetched separately), whose labels have had time to arrive; the
check record names that window as `performance_window`.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from core.clock import Clock
from core.errors import PermanentError, RetryableError, ValidationFailed
from core.events import Envelope, event_id
from core.ports import Publisher, ReportStore, StateStore, TelemetrySource
from core.records import CHECK, put, require
from core.types import EndpointRef, TelemetryBatch, Window, iso, parse_time
from monitors import windows
from monitors.alerts import AlertPolicy, check_failed, check_recovered, open_incident
from monitors.big_windows import DEFAULT_ABOVE, evaluate_window
from monitors.check_events import check_events, incident_ref
from monitors.late import LATE_RECHECK, late_telemetry
from monitors.rebaseline import active_reference, not_ready
from monitors.report import check_document, save_check_report
from monitors.schedule import REQUEST_TTL, check_requested, complete_window, window_at
from monitors.signals.suite import FittedSuite, build_suite, fit_suite
from monitors.spec import MonitorSpec, SpecRepository

log = logging.getLogger("mlops.check")
CHECK_REQUESTED = "mlops.check.requested.v1"


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
    lease: timedelta = timedelta(minutes=10)  # MLOPS_CHECK_LEASE: a live check holds its window this long
    max_attempts: int = 3  # MLOPS_CHECK_MAX_ATTEMPTS: failed attempts (not outages) before giving a window up
    request_ttl: timedelta = REQUEST_TTL  # MLOPS_CHECK_REQUEST_TTL
    references: Any = None  # monitors.reference.ReferenceLoader; None: file references only
    snapshots: Path | None = None  # where reference frames are kept per fingerprint, for reports rebuilt later
    summary_above: int | None = DEFAULT_ABOVE  # MLOPS_SUMMARY_ABOVE_ROWS; a spec's window.summary_above wins


def run_check(envelope: Envelope, deps: CheckDeps) -> dict | None:
    """Handle mlops.check.requested.v1; returns the check record, or None if the window is done or given up.

    Raises WorkHeld while another message's check of the window is live (the message comes back), and the
    check's own error after recording the attempt; after `max_attempts` counted failures the window is
    recorded failed (an incident of kind check_failed) and the record of that is returned.
    """
    if envelope.type != CHECK_REQUESTED:
        raise ValidationFailed(f"run_check handles {CHECK_REQUESTED}, not {envelope.type}", field="type")
    window = _window(envelope.data)
    spec = deps.specs.get(str(envelope.data["monitor"]))  # NotFound: permanent
    recheck = envelope.data.get("reason") == LATE_RECHECK
    # The lease belongs to this message: its redelivery (this delivery crashed) takes it over at once.
    rec = windows.claim(deps.store, (spec.name, window), envelope.id, deps.clock.now(), deps.lease, recheck=recheck)
    if rec is None:
        return None
    if rec.state == windows.PUBLISHING:  # computed and saved by an earlier delivery: announce it, finish
        return _finish(rec, spec, deps)
    try:
        doc, events, recheck_state = _check(envelope, spec, window, deps, rec, recheck=recheck)
    except Exception as exc:
        return _failed(exc, envelope, spec, window, rec, deps)
    except BaseException:
        windows.release(deps.store, rec)  # stopping: let a retry (any instance) start at once
        raise
    rec = windows.stage(deps.store, rec, doc["check_id"], events, recheck=recheck_state)
    return _finish(rec, spec, deps, doc)


def request_check(monitor: str, deps: CheckDeps, *, window: Window | None = None, reason: str = "http",
                  force: bool = False) -> dict[str, Any]:
    """An operator's request (HTTP, `monitors retry`) for `window` (default: the latest complete one).

    A pending window is asked for (under the timer's id while its request is in flight, so they dedupe;
    under a new one once it failed or its request died), a failed window is re-run, a done one only with
    `force`. Returns what happened: state requested | running | done, with the check id and event id.
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
    check_id = event_id("check", spec.name, window.key())
    answer = {"check_id": check_id, "monitor": spec.name, "window": window.to_json()}
    if force and windows.load(deps.store, spec.name, window).state == windows.DONE:
        reason = f"{reason} (re-run)"
    asked = windows.next_request(deps.store, spec.name, window, now, ttl=deps.request_ttl, operator=True,
                                 force=force)
    if asked is None:
        current = windows.load(deps.store, spec.name, window)
        state = "running" if current.state in (windows.RUNNING, windows.PUBLISHING) else current.state
        return {**answer, "state": state, "event_id": windows.request_id(spec.name, window, current.generation),
                "generation": current.generation}
    envelope = check_requested(spec.name, window, now, reason=reason, generation=asked.generation)
    deps.publisher.publish(envelope)
    return {**answer, "state": "requested", "event_id": envelope.id, "generation": asked.generation}


def open_reference(active: dict, deps: CheckDeps) -> Any:
    from monitors.reference import load_reference

    if deps.references is not None:
        return deps.references.load(active["uri"], active["base_dir"])
    return load_reference(active["uri"], base_dir=active["base_dir"])


def latest_complete_window(spec: MonitorSpec, now: datetime) -> Window:
    """The last window of the spec's grid whose end plus lateness has passed."""
    current = window_at(now - spec.window.lateness, size=spec.window.size, origin=spec.window.origin)
    return Window(current.start - spec.window.size, current.start)


def _check(envelope: Envelope, spec: MonitorSpec, window: Window, deps: CheckDeps, rec: windows.WindowRecord, *,
           recheck: bool) -> tuple[dict, list, str | None]:
    """Compute and store the check record; returns it, the events it announces, and the late re-check state."""
    endpoint = EndpointRef(spec.endpoint.name, spec.endpoint.deployment)
    active = active_reference(spec, deps.store, deps.base_dir)
    suite = fitted_suite(spec, deps, active)
    above = spec.window.summary_above if spec.window.summary_above is not None else deps.summary_above
    # exact, or from summaries for a big window; TelemetryUnavailable propagates: retryable
    current = evaluate_window(deps.telemetry, spec, endpoint, window, suite.current, above=above)
    batch, findings = current.batch, current.findings
    performance_window = None
    if suite.performance is not None and spec.label is not None:
        performance_window = shifted(window, spec.label.lag)
        horizon = spec.signals.performance.horizon
        if horizon is not None and horizon > window.length:
            performance_window = Window(performance_window.end - horizon, performance_window.end)
        labelled = batch if performance_window == window else deps.telemetry.fetch(endpoint, performance_window)
        findings += suite.performance.evaluate(labelled)
    check_id, now = event_id("check", spec.name, window.key()), deps.clock.now()
    model_version = _model_version(batch)
    # An ad-hoc window off the spec's grid is checked and recorded, but is not a vote in the alert episodes:
    # it would overlap grid windows and make the tracker skip them as "older".
    on_grid = window == window_at(window.start, size=spec.window.size, origin=spec.window.origin)
    changes = AlertPolicy(spec.alert).apply(deps.store, spec.name, window, findings, check_id=check_id,
                                            model_version=model_version) if on_grid else []
    recovered = check_recovered(deps.store, spec.name, window, check_id=check_id)  # a re-run of a given-up window
    changes += [recovered] if recovered else []
    status = "empty" if current.rows == 0 else ("breached" if any(f.breached for f in findings) else "ok")
    late = late_telemetry(deps.store, spec, window, current.rows, now, recheck=recheck)
    doc = check_document(check_id=check_id, spec=spec, window=window, findings=findings, rows=current.rows,
                         rejected=current.rejected, status=status, extra={
                             "path": current.record["path"], "window_read": current.record,
                             "reason": envelope.data.get("reason"), "requested_by": envelope.id,
                             "generation": rec.generation, "completed_at": iso(now),
                             "reference_fingerprint": suite.fingerprint,
                             "reference_rows": suite.reference_rows, "model_version": model_version,
                             "reference": {"uri": active["uri"], "model_version": active["model_version"],
                                           "base_dir": str(active["base_dir"]), "fingerprint": suite.fingerprint,
                                           "snapshot": suite.snapshot},
                             "spec": used_spec(spec),
                             "performance_window": performance_window.to_json() if performance_window else None,
                             "alerting": "applied" if on_grid else "skipped: the window is not on the monitor's grid",
                             "incidents": [incident_ref(c) for c in changes], **late.record})
    doc["report"] = save_check_report(deps.reports, doc, window)
    put(deps.store, CHECK, check_id, doc)
    run = "late-recheck" if recheck else (str(rec.generation) if rec.generation else "")
    events = check_events(envelope, spec, window, doc, findings, changes, now, run=run,
                          open_now=open_incident(deps.store, spec.name) if on_grid else None)
    if late.request is not None:
        events.append(late.request)
    return doc, events, late.state


def _finish(rec: windows.WindowRecord, spec: MonitorSpec, deps: CheckDeps, doc: dict | None = None) -> dict:
    """Relay the saved events, mark the window done (or failed), move the watermark over it."""
    windows.relay(deps.store, deps.publisher, rec)
    complete_window(deps.store, spec.name, rec.window, origin=spec.window.origin, size=spec.window.size)
    if doc is None:
        doc = dict(require(deps.store, CHECK, rec.result or event_id("check", spec.name, rec.window.key())).data)
    return doc


def _failed(exc: Exception, envelope: Envelope, spec: MonitorSpec, window: Window, rec: windows.WindowRecord,
            deps: CheckDeps) -> dict:
    """Record the failed attempt, then re-raise; or, at the last counted attempt, give the window up."""
    error = f"{type(exc).__name__}: {exc}"
    counts = not isinstance(exc, RetryableError)  # an outage delays checks, it never gives a window up
    if not counts or rec.attempts + 1 < deps.max_attempts:
        windows.fail(deps.store, rec, error, counts=counts, dead=isinstance(exc, PermanentError),
                     max_attempts=deps.max_attempts)
        raise exc
    check_id, now = event_id("check", spec.name, window.key()), deps.clock.now()
    log.error("check of %s %s failed %d times, last: %s; recorded as failed", spec.name, window.key(),
              rec.attempts + 1, error)
    change = check_failed(deps.store, spec.name, window, check_id=check_id, error=error, attempts=rec.attempts + 1)
    doc = {"check_id": check_id, "monitor": spec.name, "status": "failed", "window": window.to_json(),
           "endpoint": {"name": spec.endpoint.name, "deployment": spec.endpoint.deployment}, "model": spec.model.name,
           "rows": None, "error": error, "attempts": rec.attempts + 1, "errors": [*rec.errors, error][-5:],
           "generation": rec.generation, "completed_at": iso(now), "requested_by": envelope.id,
           "reason": envelope.data.get("reason"), "incidents": [incident_ref(change)], "report": None,
           "retry": f"POST /api/checks {{monitor, window}} or python -m monitors retry --monitor {spec.name} "
                    f"--window {iso(window.start)}/{iso(window.end)}"}
    put(deps.store, CHECK, check_id, doc)
    events = check_events(envelope, spec, window, doc, [], [change], now, run=f"failed-{rec.generation}")
    rec = windows.stage(deps.store, rec, check_id, events, then=windows.FAILED, error=error)
    return _finish(rec, spec, deps, doc)


def fitted_suite(spec: MonitorSpec, deps: CheckDeps, active: dict[str, Any] | None = None) -> FittedSuite:
    """Fitted once per (monitor, reference fingerprint, spec) per process; profiles also cached on disk.

    `active`: the reference in use (monitors.rebaseline.active_reference); a promotion changes it, and
    with it the fingerprint, so the suite is refitted once per model version."""
    active = active or active_reference(spec, deps.store, deps.base_dir)
    reference = open_reference(active, deps)
    digest = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]
    key = (spec.name, reference.fingerprint, digest)

    def fit() -> FittedSuite:
        from monitors.check_report import snapshot_reference

        suite = build_suite(spec, profiles=deps.profiles, fingerprint=reference.fingerprint)
        frame = reference.frame()
        snapshot = snapshot_reference(deps.snapshots, reference.fingerprint, frame, reference)
        return replace(fit_suite(suite, frame, reference.fingerprint), snapshot=snapshot)

    return deps.evaluators.get_or_fit(key, fit)


def used_spec(spec: MonitorSpec) -> dict[str, Any]:
    """What a report rebuilt later needs of the spec as it was: features, methods, thresholds, evidently's share."""
    return {"features": [{"name": f.name, "kind": f.kind, "method": f.method, "threshold": f.threshold}
                         for f in spec.features], "share": spec.signals.data_drift.share,
            "policy": spec.signals.data_drift.policy}


def shifted(window: Window, lag: timedelta) -> Window:
    return Window(window.start - lag, window.end - lag)


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
