"""The events one check announces, built from its stored record: check.completed, incident.changed for every
incident change, drift.detected for every window that breaches on the model's inputs, outputs or performance
while an incident is open (the retrain policy weighs its performance evidence), and a late re-check request.

They are built, not published: the check handler saves them with the window's state (monitors.windows.stage)
and relays them after, so an event never runs ahead of the record it describes.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from core.events import Envelope, event_id
from core.types import Finding, Window, iso
from monitors.alerts import RESOLVED, IncidentChange
from monitors.evidence import actionable, drift_evidence, facet_summary, highlights
from monitors.spec import MonitorSpec

Scheduled = tuple[Envelope, datetime | None]


def check_events(cause: Envelope, spec: MonitorSpec, window: Window, doc: dict[str, Any], findings: list[Finding],
                 changes: list[IncidentChange], now: datetime, *, run: str = "",
                 open_now: Mapping[str, Any] | None = None) -> list[Scheduled]:
    """`run` tells repeated checks of one window apart (a forced re-check, a late re-check): their
    completion is a new event, not a duplicate of the first one. `open_now`: the monitor's open incident
    after this window, if any."""
    check_id = doc["check_id"]
    span = {"window_start": iso(window.start), "window_end": iso(window.end)}
    summary = doc.get("summary") or {}
    completed_id = event_id("check.completed", check_id, run) if run else event_id("check.completed", check_id)
    events: list[Scheduled] = [(cause.caused("mlops.check.completed.v1", {
        "monitor": spec.name, "check_id": check_id, **span, "status": doc["status"], "rows": doc.get("rows"),
        "dataset_drift": summary.get("dataset_drift"), "drift_share": summary.get("drift_share"),
        "policy": summary.get("policy"), "model_version": doc.get("model_version"),
        "breached_signals": doc.get("breached_signals", []), "report": doc.get("report"),
        "incidents": [c.incident_id for c in changes]}, id=completed_id, time=now), None)]
    for change in changes:
        data = {**incident_ref(change), "monitor": spec.name, "endpoint": spec.endpoint.name,
                "deployment": spec.endpoint.deployment, "model_version": change.incident.get("model_version"),
                **span, "check_id": check_id, "breached": change.incident.get("breached", []),
                "opened_window": change.incident.get("opened_window"), "windows": change.incident.get("windows"),
                "facets": facet_summary(change.incident), "highlights": highlights(change.incident),
                "digest": spec.alert.digest, "report": doc.get("report")}
        events.append((cause.caused("mlops.incident.changed.v1", data, time=now, subject=spec.name,
                                    id=event_id("incident.changed", change.incident_id, change.status,
                                                window.key())), None))
    incident = next((c.incident for c in changes if c.status != RESOLVED), None) or open_now
    if incident is not None and incident.get("status") == "open" and actionable(findings):
        status = next((c.status for c in changes if c.incident_id == incident["incident_id"]), "ongoing")
        events.append((cause.caused("mlops.drift.detected.v1", drift_evidence(spec, incident, status, findings, doc,
                                                                              span),
                                    id=event_id("drift.detected", incident["incident_id"], window.key()),
                                    subject=spec.name, time=now), None))
    return events


def incident_ref(change: IncidentChange) -> dict[str, Any]:
    return {"incident_id": change.incident_id, "signal": change.signal, "signals": change.signals,
            "status": change.status, "severity": change.severity.value, "notify": change.notify}
