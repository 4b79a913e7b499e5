"""Data quality: schema changes, missing values, type errors, out-of-range values, unseen categories.

Bad rows are counted, never raised: a window full of garbage is a finding, not a crashed check.
Rows the telemetry layer rejected (`batch.rejected`) are counted here too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from core.plain import finite
from core.types import Finding, Severity, TelemetryBatch

SIGNAL = "data_quality"
# Columns every telemetry batch carries besides the features; they are not "extra" columns.
TELEMETRY_COLUMNS = frozenset({"request_id", "time", "deployment", "model_version", "latency_ms", "status_code",
                               "prediction", "score", "label"})
_EXAMPLES = 10


RATE_CHECKS = ("missing_rate", "type_error_rate", "out_of_range_rate", "unseen_rate")
# How far above the reference's own rate a window must be to matter (absolute share of rows): a broken
# client sending text for numbers matters at 1%; a few more missing or unusual values need 5 points.
DEFAULT_FLOORS = {"missing_rate": 0.05, "type_error_rate": 0.01, "out_of_range_rate": 0.05, "unseen_rate": 0.05}


@dataclass(frozen=True)
class DataQualityEvaluator:
    """`policy`: calibrated (rates against the reference's own windows, with an effect floor, family-wise
    `fwer` across every rate) or threshold (the raw `max_*` limits)."""

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
    policy: str = "calibrated"
    fwer: float = 0.01
    effect_floor: float | None = None  # one floor for every rate; None: DEFAULT_FLOORS
    min_rows: int = 30

    def fit(self, reference) -> "FittedQuality":
        import numpy as np
        import pandas as pd

        ranges, categories, columns = {}, {}, {}
        for name, kind in self.kinds.items():
            if name not in reference:
                continue
            column = reference[name]
            if kind == "numeric":
                values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                finite = values[np.isfinite(values)]  # infinities are not a range to be within
                if finite.size:
                    ranges[name] = (float(finite.min()), float(finite.max()))
                columns[name] = _Reference(column.isna().to_numpy(), np.isnan(values) & column.notna().to_numpy(),
                                           values, None)
            elif kind == "categorical":  # free text has no categories: every window would look "unseen"
                codes, keys = coded_keys(column)
                key_codes = pd.factorize(pd.Index(keys, dtype=object))[0]  # 3 and "3": one key, one code
                categories[name] = frozenset(keys[i] for i in np.unique(codes[codes >= 0]).tolist())
                by_row = np.append(key_codes, -1).astype(np.int64)[codes]  # code -1 (missing) stays -1
                columns[name] = _Reference(column.isna().to_numpy(), None, None, by_row)
            else:
                columns[name] = _Reference(column.isna().to_numpy(), None, None, None)
        return FittedQuality(self, ranges, categories, columns)

    def fit_digest(self, digest: Mapping[str, Any], load: Callable[[], "FittedQuality"]) -> "FittedQuality":
        """The fit from a digest (FittedQuality.digest of the same reference and kinds): the reference's rows
        are read only when a window is small enough for run-based nulls (`load` fits them then)."""
        return FittedQuality(self, {k: (float(lo), float(hi)) for k, (lo, hi) in digest["ranges"].items()},
                             {k: frozenset(v) for k, v in digest["categories"].items()},
                             reference_rows=int(digest["rows"]), base_rates=dict(digest["base_rates"]), load=load)

    def floor(self, check: str) -> float:
        return self.effect_floor if self.effect_floor is not None else DEFAULT_FLOORS[check]

    def limit(self, check: str) -> float:
        return {"missing_rate": self.max_missing_rate, "type_error_rate": self.max_type_error_rate,
                "out_of_range_rate": self.max_out_of_range_rate, "unseen_rate": self.max_unseen_rate}[check]


@dataclass(frozen=True, eq=False)
class _Reference:
    """One reference column in time order, as the rate nulls need it."""

    missing: Any  # bool per row
    type_errors: Any  # numeric: bool per row (a value that is not a number)
    values: Any  # numeric: floats (NaN for missing or unreadable)
    codes: Any  # categorical: category codes (-1 missing)


def category_keys(series) -> list[str]:
    """Category values as comparable text: 3, 3.0 and '3' are one category (NaN upcasts ints to floats)."""
    codes, keys = coded_keys(series)
    return [keys[c] for c in codes.tolist()]


def coded_keys(series) -> tuple[Any, list[str]]:
    """(codes, keys): each value's index into the text keys of the distinct values (-1 for missing), so
    text is made once per distinct value, not once per row (a million-row column in milliseconds)."""
    import pandas as pd

    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.codes.to_numpy(), _keys(series.cat.categories.tolist())
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes, _keys(list(uniques))


def _keys(values: list[Any]) -> list[str]:
    return [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in values]


@dataclass(frozen=True)
class FittedQuality:
    config: DataQualityEvaluator
    ranges: Mapping[str, tuple[float, float]]
    categories: Mapping[str, frozenset[str]] = field(default_factory=dict)
    columns: Mapping[str, _Reference] = field(default_factory=dict)
    # from a digest: the reference's size and binomial rates, and how to fit its rows when runs need them
    reference_rows: int | None = None
    base_rates: Mapping[str, float] = field(default_factory=dict)
    load: Callable[[], "FittedQuality"] | None = field(default=None, compare=False, repr=False)
    _nulls: dict = field(default_factory=dict, compare=False, repr=False)
    _loaded: dict = field(default_factory=dict, compare=False, repr=False)

    def digest(self) -> dict[str, Any]:
        """What a window too big for run-based nulls needs from the reference, as plain JSON: ranges,
        categories, row count and each rate's binomial base rate."""
        rows = len(next(iter(self.columns.values())).missing) if self.columns else 0
        checks = [(c, f) for f, kind in self.config.kinds.items() if f in self.columns
                  for c in _checks_of(kind, f in self.categories)]
        return {"rows": rows, "ranges": {k: list(v) for k, v in self.ranges.items()},
                "categories": {k: sorted(v) for k, v in self.categories.items()},
                # a window the size of the whole reference never has runs: this is each rate's binomial p
                "base_rates": {f"{c}:{f}": self._law(c, f, max(rows, 1)).base_rate for c, f in checks}}

    def evaluate(self, current: TelemetryBatch) -> list[Finding]:
        cfg, frame = self.config, current.frame
        if len(frame) < cfg.min_rows:
            return [self._rejected(current), Finding(SIGNAL, "rows", float(len(frame)), float(cfg.min_rows), False,
                                                     details={"insufficient": True, "note": _too_few(len(frame),
                                                                                                     cfg.min_rows)})]
        findings = [self._rejected(current), *self._schema(frame)]
        rates: list[Finding] = []
        for name, kind in cfg.kinds.items():
            if name not in frame:
                continue
            rates.append(self._rate("missing_rate", name, frame[name].isna()))
            if kind == "numeric":
                rates.extend(self._numeric(name, frame[name]))
            elif name in self.categories:
                rates.append(self._unseen(name, frame[name]))
        return findings + (self._calibrated(rates, len(frame)) if cfg.policy == "calibrated" else rates)

    def _rate(self, check: str, feature: str, mask, **details: Any) -> Finding:
        rate = float(mask.mean()) if len(mask) else 0.0
        limit = self.config.limit(check)
        breached = rate > limit
        return Finding(SIGNAL, f"{check}:{feature}", rate, limit, breached,
                       self.config.severity if breached else Severity.INFO,
                       details={"feature": feature, "check": check, "rows": int(mask.sum()), **details})

    def _numeric(self, name: str, column) -> list[Finding]:
        import pandas as pd

        values = pd.to_numeric(column, errors="coerce")
        type_errors = values.isna() & column.notna()
        examples = column[type_errors].astype(str).head(_EXAMPLES).tolist()
        found = [self._rate("type_error_rate", name, type_errors, examples=examples)]
        if name in self.ranges:
            low, high = self.ranges[name]
            outside = (values < low) | (values > high)
            found.append(self._rate("out_of_range_rate", name, outside,
                                    reference_min=low, reference_max=high,
                                    current_min=finite(values.min()),
                                    current_max=finite(values.max())))
        return found

    def _unseen(self, name: str, column) -> Finding:
        import numpy as np
        import pandas as pd

        codes, keys = coded_keys(column)
        new = np.array([key not in self.categories[name] for key in keys] + [False])  # code -1 (missing): seen
        mask = pd.Series(new[codes], index=column.index)
        examples = sorted({keys[c] for c in np.unique(codes[new[codes]]).tolist()})[:_EXAMPLES]
        return self._rate("unseen_rate", name, mask, examples=examples)

    def _calibrated(self, rates: list[Finding], rows: int) -> list[Finding]:
        """Each rate against its null; breached when significant (Holm across all rates) and above its floor."""
        from monitors.drift.verdict import holm

        cfg = self.config
        judged = {f.name: self.null(f.details["check"], f.details["feature"], rows).describe(f.statistic, rows)
                  for f in rates}
        significant = holm({name: row["p_value"] for name, row in judged.items()}, cfg.fwer)
        out = []
        for f in rates:
            row = judged[f.name]
            floor = cfg.floor(f.details["check"])
            effect = f.statistic - row["reference_rate"]
            breached = f.name in significant and effect >= floor
            calibrated = {**row, "effect": effect, "floor": floor, "significant": f.name in significant,
                          "fwer": cfg.fwer, "drifted": breached}
            out.append(Finding(SIGNAL, f.name, f.statistic, row["reference_rate"] + floor, breached,
                               cfg.severity if breached else Severity.INFO, method="calibrated",
                               p_value=row["p_value"], details={**f.details, "calibrated": calibrated}))
        return out

    def null(self, check: str, feature: str, rows: int):
        """The rate's no-problem law near this window size, computed once per grid size."""
        from monitors.drift.calibration import grid_size
        from monitors.signals import rates

        rows = grid_size(rows)  # runs about 9% apart in size have the same law; a handful of sizes get cached
        key = (check, feature, rows)
        if key not in self._nulls:
            base = self.base_rates.get(f"{check}:{feature}")
            if self.load is not None and base is not None and not rates.runs_fit(self.reference_rows or 0, rows):
                law = rates.RateNull(None, base, rows)  # a digest's binomial: no need to read the reference
            else:
                law = self._law(check, feature, rows)
            if len(self._nulls) > 256:  # window sizes vary: keep the memory bounded
                self._nulls.clear()
            self._nulls[key] = law
        return self._nulls[key]

    def _law(self, check: str, feature: str, rows: int):
        from monitors.signals import rates

        columns = self.columns
        if self.load is not None:  # fitted from a digest: read the rows once, now that runs need them
            columns = self._loaded.setdefault("columns", self.load().columns)
        ref = columns[feature]
        if check == "missing_rate":
            return rates.row_local(ref.missing, rows)
        if check == "type_error_rate":
            return rates.row_local(ref.type_errors, rows)
        if check == "out_of_range_rate":
            return rates.out_of_range(ref.values, rows)
        return rates.unseen(ref.codes, rows)

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
        breached = rate > cfg.max_rejected_rate and total >= cfg.min_rows
        return Finding(SIGNAL, "rejected_rate", rate, cfg.max_rejected_rate, breached,
                       cfg.severity if breached else Severity.INFO,
                       details={"rejected": rejected, "by_reason": dict(batch.rejected), "rows": batch.rows,
                                "examples": [dict(e) for e in batch.rejected_examples[:_EXAMPLES]],
                                **({} if total >= cfg.min_rows else {"insufficient": True,
                                                                     "note": _too_few(total, cfg.min_rows)})})


def _checks_of(kind: str, has_categories: bool) -> tuple[str, ...]:
    if kind == "numeric":
        return ("missing_rate", "type_error_rate", "out_of_range_rate")
    return ("missing_rate", "unseen_rate") if has_categories else ("missing_rate",)


def _too_few(rows: int, needed: int) -> str:
    return f"insufficient data: {rows} rows in the window, at least {needed} needed to judge"


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
            calibrated = f.details.get("calibrated")
            if calibrated and (f.breached or calibrated.get("significant")):  # what decided, or nearly did
                summary.setdefault("decisions", []).append({
                    "name": f.name, "rate": f.statistic, "reference_rate": calibrated.get("reference_rate"),
                    "floor": calibrated.get("floor"), "null_q99": calibrated.get("null_q99"),
                    "p_value": calibrated.get("p_value"), "significant": calibrated.get("significant"),
                    "breached": f.breached})
    return summary
