"""Check reports: a JSON result per check (aggregates only, never raw rows); the HTML report drawn from
it is monitors/report_html.py (built in the background: monitors/check_report.py).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

from core.plain import plain
from core.ports import ReportStore
from core.types import Finding, Window
from monitors.signals.data_drift import drift_summary
from monitors.signals.quality import quality_summary
from monitors.signals.text_drift import text_summary

if TYPE_CHECKING:
    import pandas as pd

    from monitors.spec import MonitorSpec

# Details that can hold values copied from requests; a report keeps counts and statistics only.
_RAW_DETAILS = ("examples",)


def finding_json(finding: Finding) -> dict[str, Any]:
    doc = finding.to_json()
    doc["details"] = {k: v for k, v in doc["details"].items() if k not in _RAW_DETAILS}
    return plain(doc)


def result_document(findings: list[Finding], *, rows: int, reference_rows: int | None = None) -> dict[str, Any]:
    """The CLI's JSON: dataset_drift, drift_share, policy, features[...], quality{...} (+ other signals)."""
    doc = drift_summary(findings)
    doc["quality"] = {"rows": rows, "reference_rows": reference_rows, **quality_summary(findings)}
    text = text_summary(findings)
    if text:
        doc["text"] = text
    prediction = drift_summary(findings, "prediction_drift")["features"]
    if prediction:
        doc["prediction_drift"] = prediction
    for signal in ("performance", "health", "generation_health", "answer_quality"):
        found = [finding_json(f) for f in findings if f.signal == signal]
        if found:
            doc[signal] = found
    return plain(doc)


def check_document(*, check_id: str, spec: "MonitorSpec", window: Window, findings: list[Finding], rows: int,
                   rejected: Mapping[str, int], status: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The stored record of one check: its verdicts, every finding's numbers, and where they came from."""
    return plain({
        "check_id": check_id, "monitor": spec.name, "status": status,
        "endpoint": {"name": spec.endpoint.name, "deployment": spec.endpoint.deployment},
        "model": spec.model.name, "window": window.to_json(), "rows": rows, "rejected": dict(rejected),
        "breached_signals": sorted({f.signal for f in findings if f.breached}),
        "summary": result_document(findings, rows=rows),
        "findings": [finding_json(f) for f in findings],
        **(extra or {}),
    })


def report_name(monitor: str, window: Window, suffix: str = "json") -> str:
    return f"checks/{monitor}/{window.key()}.{suffix}"


def save_check_report(reports: ReportStore, doc: Mapping[str, Any], window: Window) -> str:
    body = json.dumps(doc, sort_keys=True, allow_nan=False, default=str).encode()
    return reports.put(report_name(doc["monitor"], window), body, "application/json")


def drift_snapshot(reference_df: "pd.DataFrame", current_df: "pd.DataFrame", spec: "MonitorSpec | None" = None, *,
                   kinds: Mapping[str, str] | None = None, methods: Mapping[str, str] | None = None,
                   thresholds: Mapping[str, float] | None = None, share: float | None = None, **run: Any) -> Any:
    """evidently 0.7's data drift snapshot with the spec's (or the given) methods and thresholds; `run` goes to
    `Report.run` (timestamp, tags). evidently is imported here only."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    kinds = dict(spec.kinds if spec is not None else kinds or {})
    if not kinds:
        raise ValueError("drift_snapshot needs a spec or the feature kinds")
    columns = [c for c in kinds if c in reference_df and c in current_df and kinds[c] in ("numeric", "categorical")]
    if not columns:
        raise ValueError("no monitored column is in both the reference and the window")
    definition = DataDefinition(numerical_columns=[c for c in columns if kinds[c] == "numeric"],
                                categorical_columns=[c for c in columns if kinds[c] == "categorical"])
    if spec is not None:
        methods = {f.name: f.method for f in spec.features if f.method}
        thresholds = {f.name: f.threshold for f in spec.features if f.threshold is not None}
        share = spec.signals.data_drift.share
    methods = {c: m for c, m in (methods or {}).items() if c in columns}
    thresholds = {c: t for c, t in (thresholds or {}).items() if c in columns}
    preset = DataDriftPreset(columns=columns, drift_share=0.5 if share is None else share,
                             per_column_method=methods or None, per_column_threshold=thresholds or None)
    reference = Dataset.from_pandas(reference_df[columns], data_definition=definition)
    current = Dataset.from_pandas(current_df[columns], data_definition=definition)
    return Report([preset]).run(current, reference, **run)
