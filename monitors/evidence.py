"""What the events of a check carry: an incident's facets, and the drift and performance evidence of a window.

mlops.drift.detected.v1 is published for every window that breaches on the model's inputs, outputs or
performance while an incident is open; the retrain policy reads its `performance` object (realized and
estimated, each with its baseline and noise margin) to decide whether drift puts performance at risk.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from core.types import Finding
from monitors.report import finding_json
from monitors.signals.performance import HIGHER_IS_BETTER

if TYPE_CHECKING:
    from monitors.spec import MonitorSpec

DRIFT_SIGNALS = ("data_drift", "prediction_drift")
ACTIONABLE_SIGNALS = (*DRIFT_SIGNALS, "performance", "estimated_performance", "answer_quality")


def actionable(findings: list[Finding]) -> bool:
    """This window breached on the model's inputs, outputs or performance: evidence the retrain policy weighs."""
    return any(f.breached and f.signal in ACTIONABLE_SIGNALS for f in findings)


def facet_summary(incident: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"signal": f["signal"], "severity": f["severity"], "windows": f["windows"], "breaching": f["breaching"],
             "breached": f["breached"][:10]} for f in incident.get("facets", {}).values()]


def drift_evidence(spec: "MonitorSpec", incident: Mapping[str, Any], status: str, findings: list[Finding], doc: dict,
                   span: dict) -> dict[str, Any]:
    """mlops.drift.detected.v1: this window's drift and performance evidence while an incident is open."""
    drift = [f for f in findings if f.signal in DRIFT_SIGNALS]
    dataset = next((f for f in drift if f.signal == "data_drift" and f.name == "dataset"), None)
    signals = sorted({f.signal for f in findings if f.breached and f.signal in ACTIONABLE_SIGNALS})
    return {"monitor": spec.name, "check_id": doc["check_id"], "incident_id": incident["incident_id"],
            "status": status, "signal": signals[0] if signals else incident.get("signal"), "signals": signals,
            "severity": incident.get("severity"), "endpoint": spec.endpoint.name,
            "deployment": spec.endpoint.deployment, "model": spec.model.name, "model_version": doc["model_version"],
            **span, "policy": dataset.details.get("policy") if dataset else None,
            "drift_share": dataset.statistic if dataset else None,
            "drifted_features": sorted(f.name for f in drift if f.breached and f.name != "dataset"),
            "findings": [finding_json(f) for f in drift], "performance": performance_evidence(findings),
            "reference_fingerprint": doc["reference_fingerprint"], "retrain_allowed": spec.retrain.on_drift,
            "report": doc["report"]}


def performance_evidence(findings: list[Finding]) -> dict[str, Any]:
    """Realized (labels) and estimated (label-free) performance of the window, as the retrain policy reads it."""
    out: dict[str, Any] = {}
    for signal, key in (("performance", "realized"), ("estimated_performance", "estimated")):
        found = next((f for f in findings if f.signal == signal and not f.details.get("insufficient")), None)
        if found is not None:
            out[key] = {"metric": found.name, "value": found.statistic, "baseline": found.details.get("baseline"),
                        "threshold": found.threshold, "breached": found.breached,
                        "standard_error": found.details.get("standard_error"), "margin": found.details.get("margin"),
                        "higher_is_better": HIGHER_IS_BETTER.get(found.name, True),
                        "window": found.details.get("window")}
    answers = [f for f in findings if f.signal == "answer_quality" and f.details.get("tested")]
    if answers:  # a language model's answers: the worst-moved metric, decided against the reference's runs
        worst = max(answers, key=lambda f: (f.breached, f.details.get("effect") or 0.0))
        out["answers"] = {"metric": worst.name, "value": worst.statistic, "baseline": worst.details.get("reference"),
                          "threshold": worst.threshold, "breached": worst.breached,
                          "p_value": worst.details.get("p_value"), "higher_is_better": True}
    return out


def highlights(incident: Mapping[str, Any], limit: int = 3) -> list[str]:
    """One line per facet of the episode with the numbers that decided it, most severe first."""
    lines = []
    for facet in sorted(incident.get("facets", {}).values(), key=lambda f: (f["severity"] != "critical",
                                                                           f["first_window"]["start"])):
        shown = [f for f in facet.get("evidence", []) if f.get("breached") and f.get("name") != "dataset"]
        parts = [_decided(f) for f in shown[:limit]]
        more = f" (+{len(shown) - limit} more)" if len(shown) > limit else ""
        lines.append(f"{facet['signal']} ({facet['severity']}, {facet['windows']} window(s)): "
                     f"{'; '.join(parts) or ', '.join(facet.get('breached', []))}{more}")
    return lines


def _decided(finding: Mapping[str, Any]) -> str:
    """'temp: effect 0.31 >= floor 0.10, p 0.005' or 'auc 0.612 vs reference 0.700 (threshold 0.665)'."""
    details = finding.get("details") or {}
    calibrated = details.get("calibrated")
    name = finding.get("name")
    if calibrated:
        return (f"{name}: {_n(finding.get('statistic'))} (effect {_n(calibrated.get('effect'))} >= floor "
                f"{_n(calibrated.get('floor'))}, p {_n(calibrated.get('p_value'), 4)})")
    if details.get("baseline") is not None:
        return (f"{name} {_n(finding.get('statistic'))} vs reference {_n(details['baseline'])} "
                f"(threshold {_n(finding.get('threshold'))})")
    return f"{name} {_n(finding.get('statistic'))} (limit {_n(finding.get('threshold'))})"


def _n(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"
