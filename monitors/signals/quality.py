"""Data quality: schema changes, missing values, type errors, out-of-range values, unseen categories.

Bad rows are counted, never raised: a window full of garbage is a finding, not a crashed check.
Rows the telemetry layer rejected (`batch.rejected`) are counted here too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from core.plain import finite
from core.types import Finding, Severity, TelemetryBatch

SIGNAL = "data_quality"
# Columns every telemetry batch carries besides the features; they are not "extra" columns.
TELEMETRY_COLUMNS = frozenset({"request_id", "time", "deployment", "model_version", "latency_ms", "status_code",
                               "prediction", "score", "label"})
_EXAMPLES = 10


@dataclass(frozen=True)
class DataQualityEvaluator:
    kinds: Mapping[str, str]  # feature -> numeric | categorical
    max_missing_rate: float = 0.1
    max_type_error_rate: float = 0.01
    max_out_of_range_rate: float = 0.05
    max_unseen_rate: float = 0.05
    max_rejected_rate: float = 0.01
    allow_extra_columns: bool = True
    known_columns: frozenset[str] = TELEMETRY_COLUMNS
    severity: Severity = Severity.WARNING
    name: str = SIGNAL

    def fit(self, reference) -> "FittedQuality":
        import pandas as pd

        ranges, categories = {}, {}
        for name, kind in self.kinds.items():
            if name not in reference:
                continue
            if kind == "numeric":
                values = pd.to_numeric(reference[name], errors="coerce").dropna()
                if not values.empty:
                    ranges[name] = (float(values.min()), float(values.max()))
            elif kind == "categorical":  # free text has no categories: every window would look "unseen"
                categories[name] = frozenset(category_keys(reference[name].dropna()))
        return FittedQuality(self, ranges, categories)


def category_keys(series) -> list[str]:
    """Category values as comparable text: 3, 3.0 and '3' are one category (NaN upcasts ints to floats)."""
    return [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in series.tolist()]


@dataclass(frozen=True)
class FittedQuality:
    config: DataQualityEvaluator
    ranges: Mapping[str, tuple[float, float]]
    categories: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def evaluate(self, current: TelemetryBatch) -> list[Finding]:
        cfg, frame = self.config, current.frame
        findings = [self._rejected(current), *self._schema(frame)]
        if len(frame) == 0:
            return findings
        for name, kind in cfg.kinds.items():
            if name not in frame:
                continue
            findings.append(self._rate("missing_rate", name, frame[name].isna(), cfg.max_missing_rate))
            if kind == "numeric":
                findings.extend(self._numeric(name, frame[name]))
            elif name in self.categories:
                findings.append(self._unseen(name, frame[name]))
        return findings

    def _rate(self, check: str, feature: str, mask, threshold: float, **details: Any) -> Finding:
        rate = float(mask.mean()) if len(mask) else 0.0
        breached = rate > threshold
        return Finding(SIGNAL, f"{check}:{feature}", rate, threshold, breached,
                       self.config.severity if breached else Severity.INFO,
                       details={"feature": feature, "check": check, "rows": int(mask.sum()), **details})

    def _numeric(self, name: str, column) -> list[Finding]:
        import pandas as pd

        values = pd.to_numeric(column, errors="coerce")
        type_errors = values.isna() & column.notna()
        examples = column[type_errors].astype(str).head(_EXAMPLES).tolist()
        found = [self._rate("type_error_rate", name, type_errors, self.config.max_type_error_rate,
                            examples=examples)]
        if name in self.ranges:
            low, high = self.ranges[name]
            outside = (values < low) | (values > high)
            found.append(self._rate("out_of_range_rate", name, outside, self.config.max_out_of_range_rate,
                                    reference_min=low, reference_max=high,
                                    current_min=finite(values.min()),
                                    current_max=finite(values.max())))
        return found

    def _unseen(self, name: str, column) -> Finding:
        import pandas as pd

        present = column.dropna()
        keys = pd.Series(category_keys(present), index=present.index, dtype=object)
        unseen = ~keys.isin(self.categories[name])
        mask = pd.Series(False, index=column.index)
        mask[present.index] = unseen.to_numpy()
        examples = sorted(set(keys[unseen].tolist()))[:_EXAMPLES]
        return self._rate("unseen_rate", name, mask, self.config.max_unseen_rate, examples=examples)

    def _schema(self, frame) -> list[Finding]:
        cfg = self.config
        missing = sorted(n for n in cfg.kinds if n not in frame)
        extra = sorted(str(c) for c in frame.columns if c not in cfg.kinds and c not in cfg.known_columns)
        extra_breach = bool(extra) and not cfg.allow_extra_columns
        return [
            Finding(SIGNAL, "missing_columns", float(len(missing)), 0.0, bool(missing),
                    cfg.severity if missing else Severity.INFO, details={"columns": missing}),
            Finding(SIGNAL, "extra_columns", float(len(extra)), None if cfg.allow_extra_columns else 0.0,
                    extra_breach, cfg.severity if extra_breach else Severity.INFO, details={"columns": extra}),
        ]

    def _rejected(self, batch: TelemetryBatch) -> Finding:
        cfg = self.config
        rejected = int(sum(batch.rejected.values()))
        total = rejected + batch.rows
        rate = rejected / total if total else 0.0
        breached = rate > cfg.max_rejected_rate
        return Finding(SIGNAL, "rejected_rate", rate, cfg.max_rejected_rate, breached,
                       cfg.severity if breached else Severity.INFO,
                       details={"rejected": rejected, "by_reason": dict(batch.rejected), "rows": batch.rows,
                                "examples": [dict(e) for e in batch.rejected_examples[:_EXAMPLES]]})


def quality_summary(findings: list[Finding]) -> dict[str, Any]:
    """Findings -> the compact `quality` object of the CLI and check reports."""
    summary: dict[str, Any] = {"breached": sorted(f.name for f in findings if f.breached and f.signal == SIGNAL)}
    for f in findings:
        if f.signal != SIGNAL:
            continue
        if f.name in ("missing_columns", "extra_columns"):
            summary[f.name] = list(f.details.get("columns", []))
        elif f.name == "rejected_rate":
            summary["rejected_rows"] = f.details.get("rejected", 0)
            summary["rejected_rate"] = f.statistic
        elif ":" in f.name:
            check, feature = f.name.split(":", 1)
            summary.setdefault(check, {})[feature] = f.statistic
    return summary
