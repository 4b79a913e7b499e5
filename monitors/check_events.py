"""The events one check announces, built from its stored record: check.completed, incident.changed for every
incident change, drift.detected for drift incidents opened or updated, and a late re-check request.

They are built, not published: the check handler saves them with the window's state (monitors.windows.stage)
and relays them after, so an event never runs ahead of the record it describes.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from core.events import Envelope, event_id
from core.types import Finding, Window, iso
from monitors.alerts import OPENED, UPDATED, IncidentChange
from monitors.report import finding_json
from monitors.spec import MonitorSpec

DRIFT_SIGNALS = ("data_drift", "prediction_drift")
Scheduled = tuple[Envelope, datetime | None]


def check_events(cause: Envelope, spec: MonitorSpec, window: Window, doc: dict[str, Any], findings: list[Finding],
                 changes: list[IncidentChange], now: datetime, *, run: str = "") -> list[Scheduled]:
    """`run` tells repeated checks of one window apart (a forced re-check, a late re-check): their
    completion is a new event, not a duplicate of the first one."""
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
                "report": doc.get("report")}
        events.append((cause.caused("mlops.incident.changed.v1", data, time=now, subject=spec.name,
                                    id=event_id("incident.changed", change.incident_id, change.status,
                                                window.key())), None))
        if change.signal in DRIFT_SIGNALS and change.status in (OPENED, UPDATED):
            events.append((cause.caused("mlops.drift.detected.v1", drift_evidence(
                spec, change, findings, doc, span), id=event_id("drift.detected", change.incident_id, window.key()),
                subject=spec.name, time=now), None))
    return events


def drift_evidence(spec: MonitorSpec, change: IncidentChange, findings: list[Finding], doc: dict,
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


def incident_ref(change: IncidentChange) -> dict[str, Any]:
    return {"incident_id": change.incident_id, "signal": change.signal, "status": change.status,
            "severity": change.severity.value}
