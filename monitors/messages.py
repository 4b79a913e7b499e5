"""What a person reads: one message per event worth reading, with the numbers behind it.

Incidents notify when they open and when they resolve (updates wait for the optional daily digest);
the retraining loop notifies when a retrain starts or fails, a challenger is rejected (with the gate's
reasons and numbers), a canary is rolled back (with its health numbers) or a model is promoted.
A message is a plain mapping (the Notifier port's argument):

    {"kind": "incident.opened", "title": "...", "text": "...", "level": "warning",
     "facts": [["endpoint", "flights"], ...], "event": {"id", "type", "time"}, "data": {...the event's data}}
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from core.events import Envelope

INCIDENT = "mlops.incident.changed.v1"
LEVELS = ("info", "success", "warning", "failure")


def message_for(envelope: Envelope) -> dict[str, Any] | None:
    """The message for one event, or None when the event is not one a person is told about at once."""
    build = _BUILDERS.get(envelope.type)
    if build is None:
        return None
    built = build(envelope.data)
    if built is None:
        return None
    kind, title, lines, level, facts = built
    return {"kind": kind, "title": title, "text": "\n".join(line for line in lines if line), "level": level,
            "facts": [[k, str(v)] for k, v in facts if v not in (None, "", [])],
            "event": {"id": envelope.id, "type": envelope.type, "time": envelope.time}, "data": dict(envelope.data)}


def _incident(d: Mapping[str, Any]):
    status = d.get("status")
    if status not in ("opened", "resolved"):
        return None  # updates: recorded, and in the digest when the monitor asks for one
    where = f"{d.get('monitor')} (endpoint {d.get('endpoint')})"
    signals = ", ".join(d.get("signals") or [d.get("signal")])
    if status == "opened":
        title = f"[{d.get('severity')}] incident opened on {where}: {signals}"
        lines = [f"Breaching for {d.get('windows')} window(s) in a row, up to {_window(d)}."]
        lines += [f"- {h}" for h in d.get("highlights") or []]
        level = "failure" if d.get("severity") == "critical" else "warning"
    else:
        title = f"incident resolved on {where}: {signals}"
        lines = [f"Clean for the last window(s) up to {_window(d)}; it breached in {d.get('windows')} window(s) "
                 f"since {(d.get('opened_window') or {}).get('start', '?')}."]
        level = "success"
    lines.append(f"Report: {d['report']}" if d.get("report") else "")
    return (f"incident.{status}", title, lines, level,
            [("monitor", d.get("monitor")), ("endpoint", d.get("endpoint")), ("severity", d.get("severity")),
             ("signals", signals), ("model_version", d.get("model_version")), ("incident_id", d.get("incident_id")),
             ("check_id", d.get("check_id"))])


def _started(d: Mapping[str, Any]):
    window = d.get("window") or {}
    lines = [f"Reason: {d['reason']}" if d.get("reason") else "",
             f"Training data window {window.get('start', '?')} - {window.get('end', '?')}; "
             f"champion {d.get('champion') or 'none'}; backend {d.get('backend')}."]
    return ("retrain.started", f"retrain started for {d.get('endpoint')} (run {d.get('run_id')})", lines, "info",
            [("endpoint", d.get("endpoint")), ("run_id", d.get("run_id")), ("champion", d.get("champion"))])


def _completed(d: Mapping[str, Any]):
    if d.get("status") == "succeeded":
        return None  # the gate's decision follows: that is the message
    return _failed(d)


def _failed(d: Mapping[str, Any]):
    step = d.get("failed_step") or d.get("step") or "?"
    lines = [f"Failed at step {step}: {d.get('error') or d.get('reason') or 'no error given'}",
             "The champion keeps serving; the next drift window or request may retry."]
    return ("retrain.failed", f"retrain failed for {d.get('endpoint')} (run {d.get('run_id')})", lines, "failure",
            [("endpoint", d.get("endpoint")), ("run_id", d.get("run_id")), ("step", step)])


def _rejected(d: Mapping[str, Any]):
    gate = d.get("gate") or {}
    numbers = gate.get("numbers") or {}
    metric = (numbers.get("policy") or {}).get("primary_metric", "metric")
    lines = [f"- {reason}" for reason in gate.get("reasons") or []]
    lines.append(f"{metric}: challenger {_num(numbers.get('challenger'))}, champion {_num(numbers.get('champion'))}"
                 f" on {numbers.get('holdout_rows', '?')} recent labelled rows; the champion keeps serving.")
    return ("challenger.rejected", f"challenger {_model(d)} rejected for {d.get('endpoint')}", lines, "warning",
            [("endpoint", d.get("endpoint")), ("run_id", d.get("run_id")), ("candidate", _model(d)),
             ("challenger", _num(numbers.get("challenger"))), ("champion", _num(numbers.get("champion")))])


def _rolled_back(d: Mapping[str, Any]):
    health = d.get("health") or {}
    lines = [f"Reason: {d.get('reason')}",
             f"Canary health: {health.get('errors', '?')} errors in {health.get('requests', '?')} requests "
             f"(error rate {_num(health.get('error_rate'))}), p95 latency {_num(health.get('p95_latency_ms'), 0)} ms, "
             f"{health.get('since', '?')} - {health.get('until', '?')}.",
             f"Traffic now: {_traffic(d)}."]
    return ("model.rolled_back", f"canary {_model(d)} rolled back on {d.get('endpoint')}", lines, "failure",
            [("endpoint", d.get("endpoint")), ("run_id", d.get("run_id")), ("candidate", _model(d)),
             ("error_rate", _num(health.get("error_rate"))), ("requests", health.get("requests"))])


def _promoted(d: Mapping[str, Any]):
    lines = [f"{d.get('reason')}." if d.get("reason") else "", f"Traffic now: {_traffic(d)}.",
             "The endpoint's monitors now compare traffic with this model's reference data."
             if d.get("reference_uri") else ""]
    return ("model.promoted", f"{_model(d)} promoted on {d.get('endpoint')}", lines, "success",
            [("endpoint", d.get("endpoint")), ("run_id", d.get("run_id")), ("model", _model(d))])


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    INCIDENT: _incident, "mlops.retrain.started.v1": _started, "mlops.retrain.completed.v1": _completed,
    "mlops.retrain.failed.v1": _failed, "mlops.challenger.rejected.v1": _rejected,
    "mlops.model.rolled_back.v1": _rolled_back, "mlops.model.promoted.v1": _promoted,
}
NOTIFYING = tuple(_BUILDERS)  # the event types the alerts subscription takes


def digest_message(entries: list[Mapping[str, Any]], day: str) -> dict[str, Any]:
    """One message for a day's incident updates (signals joining, severity rising)."""
    lines = [f"- {e.get('time', '')[:16]} {e.get('monitor')}: {', '.join(e.get('signals') or [])} "
             f"({e.get('severity')}) {'; '.join(e.get('highlights') or [])[:300]}" for e in entries]
    return {"kind": "incident.digest", "title": f"incident updates of {day}: {len(entries)}", "text": "\n".join(lines),
            "level": "info", "facts": [["updates", str(len(entries))], ["day", day]],
            "event": {"id": f"digest-{day}", "type": "digest", "time": day}, "data": {"updates": list(entries)}}


def _window(d: Mapping[str, Any]) -> str:
    return str(d.get("window_end") or "?")


def _model(d: Mapping[str, Any]) -> str:
    candidate = d.get("candidate")
    if isinstance(candidate, Mapping):
        return f"{candidate.get('name')}:{candidate.get('version')}"
    return str(candidate or d.get("model_version") or "?")


def _traffic(d: Mapping[str, Any]) -> str:
    traffic = d.get("traffic") or {}
    return ", ".join(f"{name} {share}%" for name, share in traffic.items()) or "unchanged"


def _num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"
