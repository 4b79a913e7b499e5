"""Windows too big to hold: data drift from mergeable summaries, the other signals on a uniform sample.

Above `above` rows (the spec's `window.summary_above`, else the app's MLOPS_SUMMARY_ABOVE_ROWS) a check asks
its telemetry source for the window's summary (monitors.drift.summary: streamed from the local store's
segments a chunk at a time, or computed inside Log Analytics) instead of its rows, and for a seeded uniform
sample of about SAMPLE_ROWS requests for the signals that need rows (quality, health, prediction drift,
estimated performance). The record says which path was taken (`path`: exact | summary), why, and on the
summary path each drift statistic's bound on its difference from the exact engine, per feature and per method.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from core.types import EndpointRef, Finding, TelemetryBatch, Window

EXACT, SUMMARY = "exact", "summary"
DEFAULT_ABOVE = 5_000_000  # rows; a million-row window is fetched whole in about a second and 1 GB
SAMPLE_ROWS = 1_000_000  # rows the row-based signals see on the summary path: rates to about 0.1%
_CAPABLE = ("count", "summarize", "sample")


@dataclass(frozen=True)
class WindowResult:
    """What the check's current window gave: the batch the row-based signals saw, all findings, the window's
    row count and rejections, and how it was read (`record`, kept in the check's document)."""

    batch: TelemetryBatch
    findings: list[Finding]
    rows: int
    rejected: dict[str, int]
    record: dict[str, Any] = field(default_factory=dict)


def evaluate_window(telemetry: Any, spec: Any, endpoint: EndpointRef, window: Window, evaluators: tuple,
                    *, above: int | None) -> WindowResult:
    """The current window's findings from every evaluator, on the exact path or, above `above` rows where the
    source and the monitor allow it, on the summary path."""
    source = telemetry.source_for(endpoint) if hasattr(telemetry, "source_for") else telemetry
    drift = next((e for e in evaluators if hasattr(e, "evaluate_summary")), None)
    why = _exact_because(spec, source, drift, above)
    rows = source.count(endpoint, window) if why is None else None
    if why is None and rows <= above:
        why = f"{rows} rows, at most the {above} above which summaries are used"
    if why is not None:
        batch = telemetry.fetch(endpoint, window)
        findings = [f for e in evaluators for f in e.evaluate(batch)]
        return WindowResult(batch, findings, batch.rows, dict(batch.rejected),
                            {"path": EXACT, "summary_above": above, "why": why})
    summary_spec = drift.summary_spec()
    summary = source.summarize(endpoint, window, summary_spec)
    seed = int(hashlib.sha256(window.key().encode()).hexdigest()[:8], 16)
    batch = source.sample(endpoint, window, min(1.0, SAMPLE_ROWS / rows), seed=seed)
    findings, bounds = drift.evaluate_summary(summary, summary_spec)
    findings += [f for e in evaluators if e is not drift for f in e.evaluate(batch)]
    methods: dict[str, float | None] = {}
    for f in findings:
        if f.signal == "data_drift" and f.name in bounds and f.method:
            known = methods.get(f.method, 0.0)
            methods[f.method] = None if known is None or bounds[f.name] is None else max(known, bounds[f.name])
    return WindowResult(batch, findings, summary.rows, dict(summary.rejected), {
        "path": SUMMARY, "summary_above": above, "why": f"{rows} rows, more than {above}",
        "sampled_rows": batch.rows, "sample_for": "the signals other than data drift",
        "error_bounds": {"by_method": methods, "by_feature": bounds}})


def _exact_because(spec: Any, source: Any, drift: Any, above: int | None) -> str | None:
    """Why this check reads the window's rows whatever its size (None: the summary path is open)."""
    if not above:
        return "no summary threshold"
    if not all(hasattr(source, name) for name in _CAPABLE):
        return f"the telemetry source {type(source).__name__} cannot summarise a window"
    if drift is None:
        return "data drift is not evaluated"
    if "text" in spec.kinds.values():
        return "text features need the window's rows"
    return None
