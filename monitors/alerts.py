"""Alert policy: per-signal breaches over consecutive windows become incidents, one per episode.

Per (monitor, signal) a tracker document (kind ALERT_STATE) counts breaching and clean windows in a row;
it is the commit point, replaced with its etag, so racing checks re-read and decide again. An incident
(kind INCIDENT, key = incident id) opens after `consecutive` breaching windows (not during a cooldown),
is `updated` only when its evidence changes in kind (severity, or which findings breach) - a window that
merely confirms it is recorded silently - and resolves after `resolve_after` clean windows. Windows are
applied in time order: a window older than the last one applied is ignored; re-applying the last one
returns the same changes, so a redelivered check republishes the same (deduplicated) events.
Time here is window time, not wall time, so backfills and replays give the same episodes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping, Protocol

from core.events import event_id
from core.ports import StateStore
from core.records import INCIDENT, put
from core.retry import retry_on_conflict
from core.types import Finding, Severity, Window, iso, parse_time
from monitors.report import finding_json  # strict JSON, without raw examples: the store refuses NaN

ALERT_STATE = "alert"
OPENED, UPDATED, RESOLVED = "opened", "updated", "resolved"
_HISTORY = 50


class AlertSettings(Protocol):
    consecutive: int
    resolve_after: int
    cooldown: timedelta

    def severity_of(self, signal: str) -> Severity: ...


@dataclass(frozen=True)
class IncidentChange:
    incident_id: str
    monitor: str
    signal: str
    status: str  # opened | updated | resolved
    severity: Severity
    window: Window
    check_id: str
    incident: Mapping[str, Any]  # the incident record after the change
    evidence: tuple[Mapping[str, Any], ...]  # the signal's findings in this window, as JSON

    def to_json(self) -> dict[str, Any]:
        return {"incident_id": self.incident_id, "monitor": self.monitor, "signal": self.signal,
                "status": self.status, "severity": self.severity.value, "window": self.window.to_json(),
                "check_id": self.check_id, "incident": dict(self.incident),
                "evidence": [dict(e) for e in self.evidence]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "IncidentChange":
        window = Window(parse_time(doc["window"]["start"]), parse_time(doc["window"]["end"]))
        return cls(doc["incident_id"], doc["monitor"], doc["signal"], doc["status"], Severity(doc["severity"]),
                   window, doc["check_id"], doc["incident"], tuple(doc["evidence"]))


class AlertPolicy:
    def __init__(self, settings: AlertSettings) -> None:
        self.settings = settings

    def apply(self, store: StateStore, monitor: str, window: Window, findings: list[Finding], *,
              check_id: str, model_version: str | None = None) -> list[IncidentChange]:
        """Feed one window's findings through every signal's tracker; returns the incident changes."""
        by_signal: dict[str, list[Finding]] = {}
        for finding in findings:
            by_signal.setdefault(finding.signal, []).append(finding)
        changes: list[IncidentChange] = []
        for signal in sorted(by_signal):
            judged = [f for f in by_signal[signal] if not f.details.get("insufficient")]
            if not judged:
                continue  # no data is not a clean window: the streak neither grows nor resets
            change = self._apply_signal(store, monitor, signal, window, by_signal[signal], check_id, model_version)
            changes.extend(change)
        return changes

    def _apply_signal(self, store: StateStore, monitor: str, signal: str, window: Window, findings: list[Finding],
                      check_id: str, model_version: str | None) -> list[IncidentChange]:
        key = f"{monitor}/{signal}"

        def attempt() -> list[IncidentChange]:
            doc = store.get(ALERT_STATE, key)
            state = dict(doc.data) if doc else {"streak": 0, "clean": 0, "open": None, "cooldown_until": None}
            if state.get("last_window") == window.key():
                return [IncidentChange.from_json(c) for c in state.get("last_changes", [])]
            if state.get("last_window_end") and window.end <= parse_time(state["last_window_end"]):
                return []  # an older window arriving late must not rewrite the episode
            step = _Step(self.settings, monitor, signal, window, findings, check_id, model_version)
            changes = step.run(store, state)
            state.update(last_window=window.key(), last_window_end=iso(window.end),
                         last_changes=[c.to_json() for c in changes])
            if doc is None:
                store.insert(ALERT_STATE, key, state)
            else:
                store.replace(ALERT_STATE, key, state, doc.etag)
            return changes

        return retry_on_conflict(attempt, what=f"alert state of {key}")


@dataclass
class _Step:
    """One window's decision for one signal; mutates the tracker state it is given."""

    settings: AlertSettings
    monitor: str
    signal: str
    window: Window
    findings: list[Finding]
    check_id: str
    model_version: str | None

    def run(self, store: StateStore, state: dict[str, Any]) -> list[IncidentChange]:
        breached = [f for f in self.findings if f.breached]
        if breached:
            state["streak"], state["clean"] = state["streak"] + 1, 0
            return self._breaching(store, state, breached)
        state["streak"], state["clean"] = 0, state["clean"] + 1
        if state["open"] and state["clean"] >= self.settings.resolve_after:
            return self._resolve(store, state)
        return []

    def _breaching(self, store: StateStore, state: dict[str, Any], breached: list[Finding]) -> list[IncidentChange]:
        severity = self.settings.severity_of(self.signal)
        names = sorted(f.name for f in breached)
        incident = _open_incident(store, state)
        if incident is not None:
            # compared and counted in the tracker, not the incident: a retry after a lost race re-reads the
            # tracker as it was, while the incident may already hold the first attempt's write
            known = (state.get("severity", incident["severity"]), state.get("breached", incident["breached"]))
            changed = known != (severity.value, names)
            state.update(severity=severity.value, breached=names,
                         episode_windows=state.get("episode_windows", incident["windows"]) + 1)
            incident.update(windows=state["episode_windows"], last_window=self.window.to_json(),
                            last_check=self.check_id, breached=names, severity=severity.value,
                            evidence=self._evidence(), model_version=self.model_version)
            return self._save(store, incident, UPDATED if changed else None)
        cooldown = state.get("cooldown_until")
        if state["streak"] < self.settings.consecutive or (cooldown and self.window.start < parse_time(cooldown)):
            return []
        incident_id = event_id("incident", self.monitor, self.signal, self.window.key())
        state.update(open=incident_id, episode_windows=state["streak"], severity=severity.value, breached=names)
        incident = {"incident_id": incident_id, "monitor": self.monitor, "signal": self.signal, "status": "open",
                    "severity": severity.value, "opened_window": self.window.to_json(),
                    "last_window": self.window.to_json(), "resolved_window": None, "windows": state["streak"],
                    "first_check": self.check_id, "last_check": self.check_id, "breached": names,
                    "evidence": self._evidence(), "model_version": self.model_version, "history": []}
        return self._save(store, incident, OPENED)

    def _resolve(self, store: StateStore, state: dict[str, Any]) -> list[IncidentChange]:
        incident = _open_incident(store, state)
        state["open"] = None
        if incident is None:
            return []
        incident.update(status="resolved", resolved_window=self.window.to_json(), last_check=self.check_id)
        state["cooldown_until"] = iso(self.window.end + self.settings.cooldown)
        return self._save(store, incident, RESOLVED)

    def _save(self, store: StateStore, incident: dict[str, Any], status: str | None) -> list[IncidentChange]:
        if status:
            entry = {"status": status, "window": self.window.to_json(), "check_id": self.check_id}
            if incident["history"][-1:] != [entry]:  # a retry of this same step must not log it twice
                incident["history"] = [*incident["history"], entry][-_HISTORY:]
        put(store, INCIDENT, incident["incident_id"], incident)
        if status is None:
            return []
        return [IncidentChange(incident["incident_id"], self.monitor, self.signal, status,
                               Severity(incident["severity"]), self.window, self.check_id, incident,
                               tuple(self._evidence()))]

    def _evidence(self) -> list[dict[str, Any]]:
        return [finding_json(f) for f in self.findings if f.breached or f.name == "dataset"]


def _open_incident(store: StateStore, state: dict[str, Any]) -> dict[str, Any] | None:
    """The tracker's open incident; a tracker pointing at a deleted incident starts a new episode."""
    if not state.get("open"):
        return None
    doc = store.get(INCIDENT, state["open"])
    if doc is None:
        state["open"] = None
        return None
    return dict(doc.data)


CHECK_FAILED = "check_failed"


def check_failed(store: StateStore, monitor: str, window: Window, *, check_id: str, error: str,
                 attempts: int) -> IncidentChange:
    """A window given up on after repeated failures: one incident of kind `check_failed` per window, opened
    once (a retry of the same give-up returns the same change). An operator re-runs the window to clear it."""
    incident_id = event_id("incident", monitor, CHECK_FAILED, window.key())
    existing = store.get(INCIDENT, incident_id)
    incident = dict(existing.data) if existing else {
        "incident_id": incident_id, "monitor": monitor, "signal": CHECK_FAILED, "status": "open",
        "severity": Severity.WARNING.value, "opened_window": window.to_json(), "last_window": window.to_json(),
        "resolved_window": None, "windows": 1, "first_check": check_id, "last_check": check_id,
        "breached": [CHECK_FAILED], "evidence": [{"error": error, "attempts": attempts}], "model_version": None,
        "history": [{"status": OPENED, "window": window.to_json(), "check_id": check_id}]}
    if existing is None:
        put(store, INCIDENT, incident_id, incident)
    return IncidentChange(incident_id, monitor, CHECK_FAILED, OPENED, Severity.WARNING, window, check_id, incident,
                          tuple(incident["evidence"]))


def check_recovered(store: StateStore, monitor: str, window: Window, *, check_id: str) -> IncidentChange | None:
    """A window given up on was checked after all (an operator re-ran it): its check_failed incident resolves."""
    incident_id = event_id("incident", monitor, CHECK_FAILED, window.key())
    found = store.get(INCIDENT, incident_id)
    if found is None or found.data.get("status") != "open":
        return None
    incident = {**found.data, "status": "resolved", "resolved_window": window.to_json(), "last_check": check_id,
                "history": [*found.data.get("history", []),
                            {"status": RESOLVED, "window": window.to_json(), "check_id": check_id}]}
    put(store, INCIDENT, incident_id, incident)
    return IncidentChange(incident_id, monitor, CHECK_FAILED, RESOLVED, Severity.WARNING, window, check_id, incident,
                          ())
