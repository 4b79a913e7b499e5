"""The read side of monitoring for people: monitors with their state, checks, incidents, a monitor's timeline.

Everything here reads the state store and the specs; nothing writes. Checks are found through their window
claims (kind CLAIM, key `monitor/window-key`, sorted by window), so a page of checks reads only that page's
check records, not every record ever written. Answers hold aggregates and links, never telemetry rows.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

from core.paging import Page, PageRequest, paginate
from core.ports import StateStore
from core.records import CHECK, CLAIM, INCIDENT, get_watermark
from core.types import Window, iso
from monitors.rebaseline import REFERENCE, not_ready
from monitors.spec import MonitorSpec, SpecRepository, format_duration

INCIDENT_STATES = ("open", "resolved")


def report_url(check_id: str) -> str:
    return f"/api/checks/{check_id}/report"


# --- monitors --------------------------------------------------------------------------------------
def monitors_page(specs: SpecRepository, store: StateStore, page: PageRequest, base_dir: Path) -> dict[str, Any]:
    """Every monitor with its watermark, last check and open incidents; broken spec files listed apart."""
    all_specs = specs.all()
    open_by_monitor: dict[str, list[dict[str, Any]]] = {}
    for incident in _incidents(store):
        if incident.get("status") == "open":
            open_by_monitor.setdefault(str(incident.get("monitor")), []).append(incident_summary(incident))
    result = paginate(all_specs, lambda s: (s.name,), page, newest_first=False,
                      render=lambda s: monitor_summary(s, store, open_by_monitor.get(s.name, []), base_dir))
    return {**result.to_json(), "errors": [{"file": p.name, "error": e} for p, e in sorted(specs.errors.items())]}


def monitor_summary(spec: MonitorSpec, store: StateStore, open_incidents: list[dict[str, Any]],
                    base_dir: Path) -> dict[str, Any]:
    watermark = get_watermark(store, spec.name)
    last = _last_check(store, spec.name)
    reference = store.get(REFERENCE, spec.name)
    problem = not_ready(spec, store, base_dir)
    if problem:
        status = "not scheduled"
    elif open_incidents:
        status = "incident"
    elif last is None:
        status = "no checks yet"
    else:
        status = last["status"]
    return {"name": spec.name, "status": status, "endpoint": {"name": spec.endpoint.name,
                                                              "deployment": spec.endpoint.deployment},
            "model": spec.model.name, "enabled": spec.enabled, "not_scheduled_because": problem,
            "source": _source_kind(spec),
            "window": {"size": format_duration(spec.window.size), "lateness": format_duration(spec.window.lateness)},
            "schedule": spec.schedule, "signals": [n for n, s in spec.signals if s.enabled],
            "retrain_on_drift": spec.retrain.on_drift, "watermark": iso(watermark) if watermark else None,
            "reference_model_version": reference.data.get("model_version") if reference else None,
            "last_check": last, "open_incidents": open_incidents}


def _source_kind(spec: MonitorSpec) -> str:
    return spec.telemetry.kind


def _last_check(store: StateStore, monitor: str) -> dict[str, Any] | None:
    for _, doc in reversed(store.list(CLAIM, f"{monitor}/")):
        if doc.data.get("state") == "done" and doc.data.get("result"):
            found = store.get(CHECK, str(doc.data["result"]))
            if found is not None:
                return check_summary(found.data)
    return None


# --- checks ----------------------------------------------------------------------------------------
def checks_page(store: StateStore, monitors: Iterable[str], page: PageRequest, *, start: datetime | None = None,
                end: datetime | None = None, status: str | None = None) -> Page:
    """Checks of `monitors`, newest window first; windows starting in [start, end). Running ones included."""
    claims = [(monitor, Window(*_window_of(key)), doc.data) for monitor in monitors
              for key, doc in store.list(CLAIM, f"{monitor}/")]
    chosen = [c for c in claims if (start is None or c[1].start >= start) and (end is None or c[1].start < end)]
    if status is not None:  # the status lives in the check record: read them before cutting the page
        chosen = [c for c in chosen if _claim_row(store, c)["status"] == status]
    return paginate(chosen, lambda c: (iso(c[1].start), c[0], iso(c[1].end)), page,
                    render=lambda c: _claim_row(store, c))


def _window_of(claim_key: str) -> tuple[datetime, datetime]:
    stamps = claim_key.rsplit("/", 1)[1]
    start, end = stamps.split("-")
    return (datetime.strptime(start, "%Y%m%dT%H%M%S%z"), datetime.strptime(end, "%Y%m%dT%H%M%S%z"))


def _claim_row(store: StateStore, claim: tuple[str, Window, Mapping[str, Any]]) -> dict[str, Any]:
    monitor, window, data = claim
    if data.get("state") in ("done", "failed") and data.get("result"):  # failed: the record of giving up
        found = store.get(CHECK, str(data["result"]))
        if found is not None:
            return check_summary(found.data)
    return {"check_id": data.get("result"), "monitor": monitor, "window": window.to_json(),
            "status": "running" if data.get("state") == "running" else str(data.get("state")),
            "running_until": data.get("until")}


def check_summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    summary = doc.get("summary") or {}
    drifted = [f["name"] for f in summary.get("features", []) if f.get("drifted")]
    reference = doc.get("reference") or {}
    return {"check_id": doc["check_id"], "monitor": doc.get("monitor"), "window": doc.get("window"),
            "status": doc.get("status"), "rows": doc.get("rows"),
            "rejected_rows": sum((doc.get("rejected") or {}).values()),
            "breached_signals": doc.get("breached_signals", []), "dataset_drift": summary.get("dataset_drift"),
            "drift_share": summary.get("drift_share"), "policy": summary.get("policy"),
            "drifted_features": drifted, "model_version": doc.get("model_version"),
            "reference_model_version": reference.get("model_version"), "completed_at": doc.get("completed_at"),
            "reason": doc.get("reason"), "incidents": doc.get("incidents", []),
            "report_url": report_url(doc["check_id"])}


# --- incidents -------------------------------------------------------------------------------------
def incidents_page(store: StateStore, page: PageRequest, *, state: str | None = None,
                   monitor: str | None = None) -> Page:
    found = [i for i in _incidents(store)
             if (state is None or i.get("status") == state) and (monitor is None or i.get("monitor") == monitor)]
    return paginate(found, _incident_key, page, render=incident_summary)


def _incidents(store: StateStore) -> list[dict[str, Any]]:
    return [dict(doc.data) for _, doc in store.list(INCIDENT)]


def _incident_key(incident: Mapping[str, Any]) -> tuple[str, str]:
    opened = (incident.get("opened_window") or {}).get("start") or ""
    return (str(opened), str(incident.get("incident_id")))


def incident_summary(incident: Mapping[str, Any]) -> dict[str, Any]:
    """The incident without its change history, its evidence (its own, and its signals' facets') cut to what
    opened or drives it: per finding the statistic, threshold, effect and floor."""
    out = {k: v for k, v in incident.items() if k not in ("history", "evidence", "facets")}
    facets = incident.get("facets") or {}
    found = list(incident.get("evidence") or [])
    for facet in facets.values():
        found += facet.get("evidence") or [] if isinstance(facet, Mapping) else []
    if facets:
        out["facets"] = {k: {n: v for n, v in f.items() if n != "evidence"} for k, f in facets.items()
                         if isinstance(f, Mapping)}
    seen, evidence = set(), []
    for e in found:
        if isinstance(e, Mapping) and (e.get("signal"), e.get("name")) not in seen:
            seen.add((e.get("signal"), e.get("name")))
            details = e.get("details") or {}
            evidence.append({"signal": e.get("signal"), "name": e.get("name"), "statistic": e.get("statistic"),
                             "threshold": e.get("threshold"), "breached": e.get("breached"),
                             "effect": details.get("effect"), "floor": (details.get("calibrated") or {}).get("floor")})
    out["evidence"] = evidence
    for name in ("first_check", "last_check"):
        if incident.get(name):
            out[f"{name}_report_url"] = report_url(str(incident[name]))
    return out


# --- a monitor's timeline --------------------------------------------------------------------------
def timeline(spec: MonitorSpec, store: StateStore, *, start: datetime | None = None, end: datetime | None = None,
             max_points: int = 2000) -> dict[str, Any]:
    """Per checked window: verdicts, per-feature effect and floor, performance; and the monitor's incidents.

    The newest `max_points` windows in [start, end) are returned, oldest first, for charts."""
    rows = []
    for key, doc in reversed(store.list(CLAIM, f"{spec.name}/")):
        window = Window(*_window_of(key))
        if (start and window.start < start) or (end and window.start >= end):
            continue
        if doc.data.get("state") != "done" or not doc.data.get("result"):
            continue
        found = store.get(CHECK, str(doc.data["result"]))
        if found is not None:
            rows.append(_point(found.data))
        if len(rows) >= max_points:
            break
    rows.reverse()
    incidents = [incident_summary(i) for i in _incidents(store) if i.get("monitor") == spec.name]
    incidents.sort(key=_incident_key)
    return {"monitor": spec.name, "endpoint": spec.endpoint.name, "features": [f.name for f in spec.features],
            "points": rows, "incidents": incidents}


def _point(doc: Mapping[str, Any]) -> dict[str, Any]:
    features: dict[str, dict[str, Any]] = {}
    performance: dict[str, dict[str, Any]] = {}
    for f in doc.get("findings", []):
        details = f.get("details") or {}
        if f.get("signal") == "data_drift" and f.get("name") != "dataset":
            calibrated = details.get("calibrated") or {}
            features[f["name"]] = {"effect": calibrated.get("effect", details.get("effect")),
                                   "floor": calibrated.get("floor"), "null_q99": calibrated.get("null_q99"),
                                   "p_value": calibrated.get("p_value"), "statistic": f.get("statistic"),
                                   "threshold": f.get("threshold"), "drifted": f.get("breached")}
        elif "performance" in str(f.get("signal", "")) and f.get("statistic") is not None:  # realized, estimated
            performance[f"{f['signal']}/{f['name']}"] = {"value": f["statistic"], "threshold": f.get("threshold"),
                                                        "breached": f.get("breached")}
    summary = check_summary(doc)
    return {"check_id": summary["check_id"], "start": (doc.get("window") or {}).get("start"),
            "end": (doc.get("window") or {}).get("end"), "status": summary["status"], "rows": summary["rows"],
            "drift_share": summary["drift_share"], "dataset_drift": summary["dataset_drift"],
            "breached_signals": summary["breached_signals"], "model_version": summary["model_version"],
            "features": features, "performance": performance, "report_url": summary["report_url"]}

