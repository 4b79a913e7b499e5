"""Alert policy: windows whose findings breach become incidents, one per monitor episode, signals as facets.

A window *breaches* when any signal judged in it breached; it is *clean* when some signal was judged and
none breached; a window where every signal lacked data ("insufficient") is no vote: streaks neither grow
nor reset. Per monitor, a tracker document (kind ALERT_STATE) counts breaching and clean windows in a row;
it is the commit point, replaced with its etag, so racing checks re-read and decide again.

An incident (kind INCIDENT) opens after `consecutive` breaching windows in a row (N; not during a
cooldown after the last one resolved) and resolves only after `resolve_after` clean windows in a row
(M >= N): hysteresis, so a noisy signal that breaches every other day neither opens nor resolves one.
The episode's signals are facets of the one incident (data drift, performance, quality ...), each with
its windows, severity and latest evidence. Three kinds of change come out:

- `opened` and `resolved`: a person is notified;
- `updated`: a new signal joined the episode or its severity rose; recorded (and sent in the optional
  daily digest), never a notification of its own;
- a window that merely confirms an open incident changes its record silently.

Windows are applied in time order: a window older than the last one applied is ignored; re-applying the
last one returns the same changes, so a redelivered check republishes the same (deduplicated) events.
Time here is window time, not wall time, so backfills and replays give the same episodes.

Other kinds of incident use the same path: a finding of any signal name (e.g. `check_failed`, breached)
passed to `apply` joins the monitor's episode as a facet.
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
NOTIFIED = (OPENED, RESOLVED)  # the changes a person hears about at once; updates go to the digest
_HISTORY, _EVIDENCE = 50, 25
_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlertSettings(Protocol):
    consecutive: int
    resolve_after: int
    cooldown: timedelta

    def severity_of(self, signal: str) -> Severity: ...


@dataclass(frozen=True)
class IncidentChange:
    incident_id: str
    monitor: str
    signal: str  # the leading facet: the most severe signal of the episode (first to breach on ties)
    status: str  # opened | updated | resolved
    severity: Severity
    window: Window
    check_id: str
    incident: Mapping[str, Any]  # the incident record after the change
    evidence: tuple[Mapping[str, Any], ...]  # the breaching findings of this window, as JSON

    @property
    def signals(self) -> list[str]:
        return list(self.incident.get("signals", [self.signal]))

    @property
    def notify(self) -> bool:
        return self.status in NOTIFIED

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
        """Feed one window's findings through the monitor's tracker; returns the incident changes."""
        judged = {f.signal for f in findings if not f.details.get("insufficient")}
        if not judged:
            return []  # no data is not a clean window: the streak neither grows nor resets
        breaching: dict[str, list[Finding]] = {}
        for finding in findings:
            if finding.breached:
                breaching.setdefault(finding.signal, []).append(finding)
        def attempt() -> list[IncidentChange]:
            doc = store.get(ALERT_STATE, monitor)
            state = dict(doc.data) if doc else {"streak": 0, "clean": 0, "open": None, "cooldown_until": None,
                                                "facets": {}}
            if state.get("last_window") == window.key():
                return [IncidentChange.from_json(c) for c in state.get("last_changes", [])]
            if state.get("last_window_end") and window.end <= parse_time(state["last_window_end"]):
                return []  # an older window arriving late must not rewrite the episode
            step = _Step(self.settings, monitor, window, findings, breaching, check_id, model_version)
            changes = step.run(store, state)
            state.update(last_window=window.key(), last_window_end=iso(window.end),
                         last_changes=[c.to_json() for c in changes])
            if doc is None:
                store.insert(ALERT_STATE, monitor, state)
            else:
                store.replace(ALERT_STATE, monitor, state, doc.etag)
            return changes

        return retry_on_conflict(attempt, what=f"alert state of {monitor}")


def open_incident(store: StateStore, monitor: str) -> dict[str, Any] | None:
    """The monitor's open incident, if any (for readers such as the retrain evidence)."""
    doc = store.get(ALERT_STATE, monitor)
    if doc is None or not doc.data.get("open"):
        return None
    found = store.get(INCIDENT, doc.data["open"])
    return dict(found.data) if found else None


@dataclass
class _Step:
    """One window's decision for one monitor; mutates the tracker state it is given."""

    settings: AlertSettings
    monitor: str
    window: Window
    findings: list[Finding]
    breaching: dict[str, list[Finding]]
    check_id: str
    model_version: str | None

    def run(self, store: StateStore, state: dict[str, Any]) -> list[IncidentChange]:
        if self.breaching:
            state["streak"], state["clean"] = state["streak"] + 1, 0
            state["facets"] = _merge_facets(state["facets"] if state["streak"] > 1 or state["open"] else {},
                                            self._facets_now())
            return self._breaching(store, state)
        state["streak"], state["clean"] = 0, state["clean"] + 1
        state["facets"] = {s: {**f, "breaching": False} for s, f in state["facets"].items()} if state["open"] else {}
        incident = _load_open(store, state)
        if incident is None:
            return []
        if state["clean"] >= self.settings.resolve_after:
            return self._resolve(store, state, incident)
        incident.update(facets=state["facets"], clean_windows=state["clean"], last_check=self.check_id)
        return self._save(store, incident, None)

    def _facets_now(self) -> dict[str, dict[str, Any]]:
        window = self.window.to_json()
        return {signal: {"signal": signal, "severity": self.settings.severity_of(signal).value,
                         "first_window": window, "last_window": window, "windows": 1, "breaching": True,
                         "breached": sorted(f.name for f in found), "evidence": self._evidence(signal)}
                for signal, found in sorted(self.breaching.items())}

    def _breaching(self, store: StateStore, state: dict[str, Any]) -> list[IncidentChange]:
        incident = _load_open(store, state)
        lead, severity = _lead(state["facets"])
        if incident is not None:
            # compared in the tracker, not the incident: a retry after a lost race re-reads the tracker as
            # it was, while the incident may already hold the first attempt's write
            known = state.get("known") or {"severity": incident["severity"], "signals": incident["signals"]}
            now = {"severity": _max_severity(known["severity"], severity),
                   "signals": sorted(set(known["signals"]) | set(state["facets"]))}
            state["known"] = now
            state["episode_windows"] = state.get("episode_windows", incident["windows"]) + 1
            incident.update(windows=state["episode_windows"], last_window=self.window.to_json(),
                            last_check=self.check_id, facets=state["facets"], signals=now["signals"],
                            severity=now["severity"], signal=lead, clean_windows=0,
                            breached=self._breached(), evidence=_facet_evidence(state["facets"]),
                            model_version=self.model_version)
            return self._save(store, incident, UPDATED if now != known else None)
        cooldown = state.get("cooldown_until")
        if state["streak"] < self.settings.consecutive or (cooldown and self.window.start < parse_time(cooldown)):
            return []
        incident_id = event_id("incident", self.monitor, self.window.key())
        signals = sorted(state["facets"])
        state.update(open=incident_id, episode_windows=state["streak"], known={"severity": severity.value,
                                                                                "signals": signals})
        first = min((f["first_window"] for f in state["facets"].values()), key=lambda w: w["start"])
        incident = {"incident_id": incident_id, "monitor": self.monitor, "signal": lead, "signals": signals,
                    "status": "open", "severity": severity.value, "started_window": first,
                    "opened_window": self.window.to_json(), "last_window": self.window.to_json(),
                    "resolved_window": None, "windows": state["streak"], "clean_windows": 0,
                    "first_check": self.check_id, "last_check": self.check_id, "breached": self._breached(),
                    "facets": state["facets"], "evidence": _facet_evidence(state["facets"]),
                    "model_version": self.model_version,
                    "history": []}
        return self._save(store, incident, OPENED)

    def _resolve(self, store: StateStore, state: dict[str, Any], incident: dict[str, Any]) -> list[IncidentChange]:
        state.update(open=None, known=None, facets={}, episode_windows=0)
        incident.update(status="resolved", resolved_window=self.window.to_json(), last_check=self.check_id,
                        clean_windows=state["clean"], facets={s: {**f, "breaching": False}
                                                              for s, f in incident["facets"].items()})
        state["cooldown_until"] = iso(self.window.end + self.settings.cooldown)
        return self._save(store, incident, RESOLVED)

    def _save(self, store: StateStore, incident: dict[str, Any], status: str | None) -> list[IncidentChange]:
        if status:
            entry = {"status": status, "window": self.window.to_json(), "check_id": self.check_id,
                     "severity": incident["severity"], "signals": list(incident["signals"])}
            if incident["history"][-1:] != [entry]:  # a retry of this same step must not log it twice
                incident["history"] = [*incident["history"], entry][-_HISTORY:]
        put(store, INCIDENT, incident["incident_id"], incident)
        if status is None:
            return []
        evidence = tuple(self._all_evidence())
        return [IncidentChange(incident["incident_id"], self.monitor, incident["signal"], status,
                               Severity(incident["severity"]), self.window, self.check_id, incident, evidence)]

    def _breached(self) -> list[str]:
        return sorted(f"{signal}/{f.name}" for signal, found in self.breaching.items() for f in found)

    def _all_evidence(self) -> list[dict[str, Any]]:
        return [e for signal in sorted(self.breaching) for e in self._evidence(signal)]

    def _evidence(self, signal: str) -> list[dict[str, Any]]:
        mine = [f for f in self.findings if f.signal == signal and (f.breached or f.name == "dataset")]
        return [finding_json(f) for f in mine[:_EVIDENCE]]


def _merge_facets(before: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Facets of the episode so far, with this window's breaching signals folded in."""
    merged = {signal: {**facet, "breaching": False} for signal, facet in before.items()}
    for signal, facet in now.items():
        if signal in merged:
            merged[signal].update(last_window=facet["last_window"], windows=merged[signal]["windows"] + 1,
                                  breaching=True, breached=facet["breached"], evidence=facet["evidence"],
                                  severity=_max_severity(merged[signal]["severity"], Severity(facet["severity"])))
        else:
            merged[signal] = dict(facet)
    return merged


def _facet_evidence(facets: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The incident's `evidence`: each facet's latest breaching findings, every signal of the episode."""
    return [e for signal in sorted(facets) for e in facets[signal].get("evidence", [])]


def _lead(facets: Mapping[str, Mapping[str, Any]]) -> tuple[str, Severity]:
    """The most severe facet; on ties the one that breached first."""
    ranked = sorted(facets.values(), key=lambda f: (-_RANK[Severity(f["severity"])], f["first_window"]["start"],
                                                    f["signal"]))
    return ranked[0]["signal"], Severity(ranked[0]["severity"])


def _max_severity(a: str, b: Severity) -> str:
    return max(Severity(a), b, key=_RANK.__getitem__).value


def _load_open(store: StateStore, state: dict[str, Any]) -> dict[str, Any] | None:
    """The tracker's open incident; a tracker pointing at a deleted incident starts a new episode."""
    if not state.get("open"):
        return None
    doc = store.get(INCIDENT, state["open"])
    if doc is None:
        state.update(open=None, known=None)
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
