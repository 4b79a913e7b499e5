"""Issue 10's targets, measured on a run: how many incidents, how many notifications each, whether every week
of lost performance was inside an incident, how far the label-free estimate was from realized AUC, and the
difference between two strategies with a confidence interval.

Pure functions of the run's records (incidents, the messages the channel received, scored traffic), so they
measure any history the backtest replays, not only the flights.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

INCIDENT_KINDS = ("incident.opened", "incident.resolved", "incident.digest")


def incident_stats(incidents: Iterable[Mapping[str, Any]], messages: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Incidents and the notifications about them (opened, resolved, digests); the loop's own messages apart."""
    incidents = list(incidents)
    kinds = pd.Series([m.get("kind", "other") for m in messages], dtype=object)
    about_incidents = int(kinds.isin(INCIDENT_KINDS).sum())
    return {"incidents": len(incidents), "incident_notifications": about_incidents,
            "notifications_per_incident": about_incidents / len(incidents) if incidents else 0.0,
            "loop_notifications": int((~kinds.isin(INCIDENT_KINDS)).sum()),
            "notifications_by_kind": {str(k): int(v) for k, v in kinds.value_counts().sort_index().items()}}


def open_spans(incidents: Iterable[Mapping[str, Any]], end: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """[first breaching window's start, resolving window's end) of each incident; still open: until `end`."""
    spans = []
    for incident in incidents:
        first = incident.get("started_window") or incident.get("opened_window") or {}
        if not first.get("start"):
            continue
        resolved = incident.get("resolved_window") or {}
        stop = pd.Timestamp(resolved["end"]) if resolved.get("end") else end
        spans.append((pd.Timestamp(first["start"]), stop))
    return spans


def weekly_recall(served: pd.DataFrame, baseline: pd.Series, incidents: Iterable[Mapping[str, Any]], *,
                  start: pd.Timestamp, end: pd.Timestamp, drop: float = 0.03, min_rows: int = 200) -> dict[str, Any]:
    """Weeks whose realized AUC fell `drop` or more below the serving model's holdout AUC, and how many of
    them an incident covered (open at some point of the week).

    `served`: time, label, score of what the endpoint answered; `baseline`: the serving model's holdout AUC
    over time (a step series indexed by time, e.g. the performance finding's baseline per check).
    """
    spans = open_spans(incidents, end)
    weeks = []
    for week in pd.date_range(start, end, freq="7D", inclusive="left"):
        stop = min(week + pd.Timedelta(days=7), end)
        rows = served[(served["time"] >= week) & (served["time"] < stop)]
        realized = _auc(rows["label"].to_numpy(dtype=int), rows["score"].to_numpy(dtype=float)) \
            if len(rows) >= min_rows else None
        realized = None if realized is None or realized != realized else realized  # NaN: one class only
        known = baseline[baseline.index < stop]
        if realized is None or known.empty:
            continue
        base = float(known.iloc[-1])
        covered = any(lo < stop and hi > week for lo, hi in spans)
        weeks.append({"week": f"{week:%Y-%m-%d}", "auc": realized, "baseline": base, "drop": base - realized,
                      "lost": base - realized >= drop, "in_incident": covered})
    lost = [w for w in weeks if w["lost"]]
    return {"weeks": len(weeks), "lost_weeks": len(lost), "covered": sum(w["in_incident"] for w in lost),
            "recall": sum(w["in_incident"] for w in lost) / len(lost) if lost else None, "drop": drop,
            "missed": [w["week"] for w in lost if not w["in_incident"]], "by_week": weeks}


def label_free_error(estimated: Mapping[str, float | None], realized: Mapping[str, float | None]) -> dict[str, Any]:
    """Mean absolute error of the label-free estimate against realized AUC, month by month."""
    pairs = {m: (estimated[m], realized[m]) for m in realized
             if estimated.get(m) is not None and realized.get(m) is not None}
    errors = [abs(e - r) for e, r in pairs.values()]
    return {"mae": float(np.mean(errors)) if errors else None, "months": len(errors),
            "by_month": {m: {"estimated": e, "realized": r} for m, (e, r) in sorted(pairs.items())}}


def auc_difference(frame: pd.DataFrame, a: str, b: str, *, replicates: int = 200, seed: int = 0,
                   level: float = 0.95) -> dict[str, Any]:
    """Mean monthly AUC of score column `a` minus that of `b`, with a bootstrap interval over days.

    `frame`: time, label, a, b (the same flights scored by both). Days are resampled within each month,
    the monthly AUCs recomputed from the resampled days, and their mean difference taken.
    """
    frame = frame.dropna(subset=["label", a, b])
    frame = frame.assign(day=frame["time"].dt.floor("D"), month=frame["time"].dt.strftime("%Y-%m"))
    months = [_month_arrays(group, a, b) for _, group in frame.groupby("month")]
    point = float(np.mean([_auc(*m.pooled(a)) - _auc(*m.pooled(b)) for m in months]))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(replicates):
        diffs = []
        for m in months:
            picked = rng.integers(0, len(m.days), len(m.days))
            diffs.append(_auc(*m.pooled(a, picked)) - _auc(*m.pooled(b, picked)))
        draws.append(np.mean(diffs))
    low, high = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"difference": point, "low": float(low), "high": float(high), "level": level, "replicates": replicates,
            "months": len(months), "resampled": "days within each month"}


class _Month:
    def __init__(self, days: list[dict[str, np.ndarray]]) -> None:
        self.days = days

    def pooled(self, column: str, picked: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        chosen = self.days if picked is None else [self.days[i] for i in picked]
        return np.concatenate([d["label"] for d in chosen]), np.concatenate([d[column] for d in chosen])


def _month_arrays(group: pd.DataFrame, a: str, b: str) -> _Month:
    return _Month([{"label": day["label"].to_numpy(dtype=int), a: day[a].to_numpy(dtype=float),
                    b: day[b].to_numpy(dtype=float)} for _, day in group.groupby("day")])


def _auc(label: np.ndarray, score: np.ndarray) -> float:
    from scipy.stats import rankdata

    positives = int(label.sum())
    negatives = label.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[label == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def performance_baseline(checks: Iterable[Mapping[str, Any]]) -> pd.Series:
    """The serving model's holdout performance over time: the realized performance finding's baseline per check."""
    points = {}
    for check in checks:
        found = next((f for f in check.get("findings", []) if f.get("signal") == "performance"), None)
        baseline = ((found or {}).get("details") or {}).get("baseline")
        if baseline is not None:
            points[pd.Timestamp(check["window"]["start"])] = float(baseline)
    return pd.Series(points, dtype=float).sort_index()


def label_free_by_month(evaluator: Any, reference: pd.DataFrame, scored: pd.DataFrame, score: str,
                        months: Iterable[pd.Timestamp]) -> dict[str, float | None]:
    """The label-free estimate of each month's AUC from its scores alone, calibrated on `reference`."""
    from core.types import EndpointRef, TelemetryBatch, Window

    fitted = evaluator.fit(reference)
    out = {}
    for month in months:
        stop = month + pd.offsets.MonthBegin(1)
        rows = scored[(scored["time"] >= month) & (scored["time"] < stop)]
        batch = TelemetryBatch(EndpointRef("estimate"), Window(month.to_pydatetime(), stop.to_pydatetime()),
                               rows[[score]].rename(columns={score: evaluator.prediction_column}))
        (finding,) = fitted.evaluate(batch)
        out[f"{month:%Y-%m}"] = finding.statistic
    return out


def measure(world: Any, box: Any, messages: list[Mapping[str, Any]], scored: pd.DataFrame | None) -> dict[str, Any]:
    """Every target of issue 10 on this replay. Incidents and notifications for any task; the weeks of lost
    performance, the label-free estimate and the managed-vs-scheduled interval for binary classifiers (AUC)."""
    from core.records import CHECK, INCIDENT
    from monitors.signals.estimated import EstimatedPerformanceEvaluator
    from replay.strategies import months

    incidents = [dict(d.data) for _, d in box.store.list(INCIDENT)]
    checks = [dict(d.data) for _, d in box.store.list(CHECK)]
    out: dict[str, Any] = {"incidents": incident_stats(incidents, messages)}
    if scored is None:
        return out
    served = scored[["time", "label", "managed"]].rename(columns={"managed": "score"}).dropna()
    recall = weekly_recall(served, performance_baseline(checks), incidents, start=world.start, end=world.end)
    out["lost_weeks"] = {k: v for k, v in recall.items() if k != "by_week"}
    reference = pd.read_parquet(world.ws.reference_path)  # the champion's own: training rows + scored holdout
    estimator = EstimatedPerformanceEvaluator("score", "score", "label", "binary")
    estimated = label_free_by_month(estimator, reference, scored, "never", months(world.start, world.end))
    realized = {f"{m:%Y-%m}": _monthly(scored, "never", m) for m in months(world.start, world.end)}
    out["label_free"] = label_free_error(estimated, realized)
    out["label_free"]["model"] = "the champion (never retrained), estimated from its scores alone"
    if "scheduled" in scored:
        out["managed_vs_scheduled"] = auc_difference(scored.dropna(subset=["managed"]), "managed", "scheduled")
    return out


def _monthly(scored: pd.DataFrame, column: str, month: pd.Timestamp) -> float | None:
    rows = scored[(scored["time"] >= month) & (scored["time"] < month + pd.offsets.MonthBegin(1))]
    value = _auc(rows["label"].to_numpy(dtype=int), rows[column].to_numpy(dtype=float)) if len(rows) >= 50 else None
    return None if value is None or value != value else value
