"""The three strategies compared on the same traffic: never retrain, retrain monthly, the managed loop.

"never" and "monthly" score the same flights offline with models trained by the same pipeline (local
runner, same rule); "managed" is what the endpoint actually served, read back from its telemetry.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.types import EndpointRef, ModelVersion, Window
from demo.data import Traffic
from demo.workspace import ENDPOINT, MODEL, predict, training_frame


def months(start: pd.Timestamp, end: pd.Timestamp) -> list[pd.Timestamp]:
    return list(pd.date_range(start, end, freq="MS", inclusive="left"))


def auc(labels: Any, scores: Any) -> float | None:
    from sklearn.metrics import roc_auc_score

    labels, scores = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    keep = ~np.isnan(scores) & ~np.isnan(labels)  # failed requests have no score; late labels may not be in yet
    if keep.sum() < 50 or len(set(labels[keep].tolist())) < 2:
        return None
    return float(roc_auc_score(labels[keep], scores[keep]))


def served_auc(box: Any, start: pd.Timestamp, end: pd.Timestamp) -> dict[str, float | None]:
    """Monthly AUC of what the endpoint answered (champion and canaries alike), from its telemetry."""
    out = {}
    for month in months(start, end):
        stop = min(month + pd.offsets.MonthBegin(1), end)
        batch = box.telemetry.fetch(EndpointRef(ENDPOINT), Window(month.to_pydatetime(), stop.to_pydatetime()))
        frame = batch.frame
        out[f"{month:%Y-%m}"] = auc(frame["label"], frame["score"]) if len(frame) else None
    return out


def scored_flights(traffic: Traffic, box: Any, champion: Any, scheduled: "Scheduled | None", start: pd.Timestamp,
                   end: pd.Timestamp) -> pd.DataFrame:
    """Every replayed flight with its label and each strategy's score: never (the champion), scheduled (that
    month's model) and managed (what the endpoint answered, from its telemetry, NaN for failed requests)."""
    rows = traffic.between(start, end)
    frame = training_frame(rows)
    out = pd.DataFrame({"time": frame["time"], "request_id": rows["request_id"].to_numpy(),
                        "label": frame["label"].to_numpy(), "never": predict(champion, frame)})
    if scheduled is not None:
        out["scheduled"] = np.nan
        for month in months(start, end):
            model = scheduled.models.get(f"{month:%Y-%m}", champion)
            mask = ((out["time"] >= month) & (out["time"] < month + pd.offsets.MonthBegin(1))).to_numpy()
            out.loc[mask, "scheduled"] = predict(model, frame[mask])
    batch = box.telemetry.fetch(EndpointRef(ENDPOINT), Window(start.to_pydatetime(), end.to_pydatetime()))
    answered = batch.frame.drop_duplicates("request_id").set_index("request_id")["score"]
    out["managed"] = out["request_id"].map(answered).astype(float)
    return out


def by_month(scored: pd.DataFrame, column: str, start: pd.Timestamp, end: pd.Timestamp) -> dict[str, float | None]:
    out = {}
    for month in months(start, end):
        rows = scored[(scored["time"] >= month) & (scored["time"] < min(month + pd.offsets.MonthBegin(1), end))]
        out[f"{month:%Y-%m}"] = auc(rows["label"], rows[column]) if len(rows) else None
    return out


@dataclass
class Scheduled:
    """Monthly retraining in a background thread, on data whose labels had arrived by the 1st."""

    traffic: Traffic
    runner: Any
    registry: Any
    reference: str
    export_dir: Any
    label_lag: pd.Timedelta
    start: pd.Timestamp
    end: pd.Timestamp
    rule: str = "sliding:60"
    models: dict[str, Any] = field(default_factory=dict)
    retrains: int = 0
    error: BaseException | None = None

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="scheduled strategy", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        try:
            for month in months(self.start, self.end)[1:]:  # April is served by the champion
                self.models[f"{month:%Y-%m}"] = self._train(month)
                self.retrains += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            self.error = exc

    def _train(self, month: pd.Timestamp) -> Any:
        known = month - self.label_lag
        recent = training_frame(self.traffic.between(month - pd.Timedelta(days=75), known))
        path = self.export_dir / f"scheduled-{month:%Y-%m}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        recent.to_parquet(path, index=False)
        request = {"run_id": f"scheduled-{month:%Y-%m}", "endpoint": ENDPOINT, "model_name": f"{MODEL}-monthly",
                   "features": _features(), "label": "label", "time_column": "time", "reference": self.reference,
                   "recent": str(path), "rule": self.rule, "holdout_days": 7, "slices": ["origin"],
                   "champion": None, "parent": None, "random_state": 0,
                   "window": {"start": (month - pd.Timedelta(days=75)).isoformat(), "end": known.isoformat()},
                   "requested_at": month.isoformat()}
        ref = self.runner.submit(request, idempotency_key=f"demo-scheduled-{month:%Y-%m}")
        status = self.runner.wait(ref, timeout=900)
        if status.model is None:
            raise RuntimeError(f"monthly retrain for {month:%Y-%m} failed at {status.failed_step}: {status.error}")
        return self.registry.load_model(ModelVersion(status.model.name, status.model.version))


def _features() -> dict[str, str]:
    from demo.data import FEATURES

    return dict(FEATURES)
