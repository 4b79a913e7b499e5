"""The HTML report of a check: the service's verdict first, with the numbers that decided it, then
evidently's panels as supporting evidence (its own dataset verdict labelled as evidently's rule).

The verdict section is drawn from the check's stored record, not recomputed, so a report rebuilt a
month later says what the check said. evidently's panels are computed on the reference the check used
(its recorded snapshot) and the same window. evidently is imported only inside `evidently_panels`.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import pandas as pd

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}
th{background:#f4f4f4}.yes{color:#b00020;font-weight:600}.note{color:#666}.verdict{font-size:1.2em;padding:.6em 1em;
border-left:6px solid #b00020;background:#fff4f4}.verdict.ok{border-color:#2e7d32;background:#f3fbf3}
iframe{width:100%;height:1400px;border:1px solid #ccc}"""


@dataclass(frozen=True)
class EvidentlyPanels:
    """evidently's HTML and its per-column numbers, for the table that sits above its own panels."""

    html: str
    columns: list[dict[str, Any]] = field(default_factory=list)  # name, method, score, threshold, drifted
    share: float = 0.5  # evidently's rule: dataset drift when at least this share of columns drifted

    @property
    def drifted_share(self) -> float:
        return sum(c["drifted"] for c in self.columns) / len(self.columns) if self.columns else 0.0

    @property
    def dataset_drift(self) -> bool:
        return bool(self.columns) and self.drifted_share >= self.share


def evidently_panels(reference: "pd.DataFrame", current: "pd.DataFrame", kinds: Mapping[str, str], *,
                     methods: Mapping[str, str] | None = None, thresholds: Mapping[str, float] | None = None,
                     share: float = 0.5) -> EvidentlyPanels:
    """evidently 0.7's DataDriftPreset with the check's methods and thresholds, on the same two frames."""
    from monitors.report import drift_snapshot

    snapshot = drift_snapshot(reference, current, kinds=kinds, methods=methods, thresholds=thresholds, share=share)
    return EvidentlyPanels(snapshot.get_html_str(as_iframe=False), _columns(snapshot.dict()), share)


def _columns(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for metric in doc.get("metrics", []):
        config = metric.get("config") or {}
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        method, score, threshold = str(config.get("method")), metric.get("value"), config.get("threshold")
        is_p = "p_value" in method  # a p-value drifts below its threshold; a distance at or above it
        drifted = score is not None and threshold is not None and (score < threshold if is_p else score >= threshold)
        out.append({"name": config.get("column"), "method": method, "score": score, "threshold": threshold,
                    "drifted": bool(drifted)})
    return out


def render_check_html(record: Mapping[str, Any], panels: EvidentlyPanels | None, *, note: str | None = None) -> bytes:
    """Our verdict (from the record), the other signals, then evidently's table and panels."""
    summary = record.get("summary") or {}
    parts = [f"<h1>{_e(_title(record))}</h1>", _verdict(summary), _provenance(record, note),
             "<h2>Data drift: the numbers that decided</h2>", _drift_table(summary.get("features", []),
                                                                          summary.get("policy"))]
    prediction = summary.get("prediction_drift")
    if prediction:
        parts += ["<h2>Prediction drift</h2>", _drift_table(prediction, prediction[0].get("decided_by"))]
    parts += ["<h2>Other signals</h2>", _signals_table(record.get("findings", []))]
    if panels is not None:
        parts += [_evidently_section(panels)]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{_e(_title(record))}</title>'
            f"<style>{_STYLE}</style></head><body>{body}</body></html>").encode()


def _title(record: Mapping[str, Any]) -> str:
    window = record.get("window") or {}
    span = f" {window.get('start', '')} - {window.get('end', '')}" if window else ""
    return f"Check of {record.get('monitor', '?')}{span}"


def _verdict(summary: Mapping[str, Any]) -> str:
    policy = summary.get("policy") or "?"
    drifted = [f["name"] for f in summary.get("features", []) if f.get("drifted")]
    if summary.get("dataset_drift"):
        text = f"DRIFT by this service's {policy} policy: {', '.join(drifted) or 'the dataset'}"
        return f'<p class="verdict">{_e(text)}</p>'
    text = f"No drift by this service's {policy} policy"
    return f'<p class="verdict ok">{_e(text)}</p>'


def _provenance(record: Mapping[str, Any], note: str | None) -> str:
    reference = record.get("reference") or {}
    rows = [("check", record.get("check_id")), ("status", record.get("status")),
            ("breached signals", ", ".join(record.get("breached_signals") or []) or "none"),
            ("window rows", record.get("rows")), ("reference", reference.get("uri")),
            ("reference fingerprint", record.get("reference_fingerprint") or reference.get("fingerprint")),
            ("reference rows", record.get("reference_rows")), ("reference model", reference.get("model_version")),
            ("checked at", record.get("completed_at"))]
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows if v not in (None, ""))
    extra = f'<p class="note">{_e(note)}</p>' if note else ""
    return f"<table>{cells}</table>{extra}"


def _drift_table(features: list[Mapping[str, Any]], policy: str | None) -> str:
    if policy == "calibrated":
        head = ["feature", "kind", "effect", "floor", "no-drift q99", "exceedance p", "significant", "decided"]
        rows = [[f["name"], f.get("kind"), _effect(f), _n((f.get("calibrated") or {}).get("floor")),
                 _n((f.get("calibrated") or {}).get("null_q99")), _n((f.get("calibrated") or {}).get("p_value"), 4),
                 _yes((f.get("calibrated") or {}).get("significant")), _yes(f.get("drifted"))] for f in features]
        caption = ("A feature drifted when its effect reaches its floor AND it exceeds what windows of this size "
                   "drawn from the reference itself show (exceedance p-value, Holm-corrected across features).")
    else:
        head = ["feature", "kind", "method", "statistic", "threshold", "decided"]
        rows = [[f["name"], f.get("kind"), (f.get("evidently") or {}).get("method"),
                 _n((f.get("evidently") or {}).get("statistic"), 4), _n((f.get("evidently") or {}).get("threshold")),
                 _yes(f.get("drifted"))] for f in features]
        caption = "Policy evidently: each column's statistic against its threshold, as evidently decides it."
    return f'<p class="note">{_e(caption)}</p>' + _table(head, rows)


def _effect(f: Mapping[str, Any]) -> str:
    calibrated = f.get("calibrated") or {}
    return f"{_n(calibrated.get('effect'), 4)} ({calibrated.get('effect_method') or '?'})"


def _signals_table(findings: list[Mapping[str, Any]]) -> str:
    rows = []
    for f in findings:
        if f.get("signal") in ("data_drift", "prediction_drift"):
            continue
        details = f.get("details") or {}
        calibrated = details.get("calibrated") or {}
        basis = (f"reference {_n(calibrated.get('reference_rate'))}, floor {_n(calibrated.get('floor'))}"
                 if calibrated else f"reference {_n(details['baseline'])}" if details.get("baseline") is not None
                 else "")
        rows.append([f.get("signal"), f.get("name"), _n(f.get("statistic"), 4), _n(f.get("threshold"), 4),
                     _n(f.get("p_value"), 4), basis, _yes(f.get("breached")), details.get("note") or ""])
    return _table(["signal", "check", "value", "threshold", "p", "basis", "breached", "note"], rows)


def _evidently_section(panels: EvidentlyPanels) -> str:
    drifted = sum(c["drifted"] for c in panels.columns)
    rule = (f"evidently's rule (not this service's verdict): dataset drift when at least {panels.share:.0%} of the "
            f"columns exceed their own thresholds. Here {drifted} of {len(panels.columns)} did "
            f"({panels.drifted_share:.0%}), so by evidently's rule: "
            f"{'Dataset Drift is detected' if panels.dataset_drift else 'Dataset Drift is NOT detected'}.")
    rows = [[c["name"], c["method"], _n(c["score"], 4), _n(c["threshold"]), _yes(c["drifted"])]
            for c in panels.columns]
    frame = html.escape(panels.html, quote=True)
    return ("<h2>evidently's panels (supporting evidence)</h2>"
            f'<p class="note">{_e(rule)}</p>' + _table(["column", "method", "score", "threshold", "drifted"], rows)
            + f'<iframe title="evidently report" sandbox="allow-scripts" srcdoc="{frame}"></iframe>')


def _table(head: list[str], rows: list[list[Any]]) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td{_cls(c)}>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def _cls(cell: Any) -> str:
    return ' class="yes"' if cell == "yes" else ""


def _yes(value: Any) -> str:
    return "yes" if value else ("no" if value is not None else "")


def _n(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))
