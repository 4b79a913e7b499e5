"""The three strategies compared on the same traffic: never retrain, retrain monthly, the managed loop.

"never" and "monthly" score the same rows offline with models trained by the same pipeline and the team's
command (local runner, the endpoint's rule); "managed" is what the endpoint actually served, read back from
its telemetry. Each month gets the task's primary metric (AUC, macro F1 or MAE).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.types import EndpointRef, ModelVersion, Window
from replay.workspace import LABEL, training_frame

MIN_ROWS = 50  # fewer labelled rows in a month: no number for it


def months(start: pd.Timestamp, end: pd.Timestamp) -> list[pd.Timestamp]:
    first = pd.Timestamp(year=start.year, month=start.month, day=1, tz=start.tz)
    return [m for m in pd.date_range(first, end, freq="MS", inclusive="left") if m + pd.offsets.MonthBegin(1) > start]


def primary(task: str) -> tuple[str, bool]:
    from retrain.components._metrics import PRIMARY, higher_is_better

    return PRIMARY[task], higher_is_better(PRIMARY[task])


def score(task: str, y: Any, answers: Any) -> float | None:
    from retrain.components._metrics import metrics

    if len(y) < MIN_ROWS:
        return None
    return metrics(task, np.asarray(y), answers).get(primary(task)[0])


def monthly_metric(world: Any, model: Any, start: pd.Timestamp, end: pd.Timestamp) -> dict[str, float | None]:
    from retrain.components._models import answer

    out = {}
    for month in months(start, end):
        lo, hi = max(month, start), min(month + pd.offsets.MonthBegin(1), end)
        rows = world.traffic.between(lo, hi)
        out[f"{month:%Y-%m}"] = (score(world.task, rows[LABEL].to_numpy(), answer(
            model, rows, world.traffic.features, world.task)) if len(rows) >= MIN_ROWS else None)
    return out


def served_metric(world: Any, box: Any) -> dict[str, float | None]:
    """Monthly metric of what the endpoint answered (champion and canaries alike), from its telemetry."""
    from retrain.components._models import Answers

    out = {}
    for month in months(world.start, world.end):
        lo, hi = max(month, world.start), min(month + pd.offsets.MonthBegin(1), world.end)
        frame = box.telemetry.fetch(EndpointRef(world.endpoint), Window(lo.to_pydatetime(), hi.to_pydatetime())).frame
        # failed requests have no answer; late labels may not be in yet
        frame = frame[frame["label"].notna() & frame["prediction"].notna()] if len(frame) else frame
        if len(frame) < MIN_ROWS:
            out[f"{month:%Y-%m}"] = None
            continue
        y, predicted = frame["label"].to_numpy(), frame["prediction"].to_numpy()
        if world.task == "binary":
            p = frame["score"].astype(float).to_numpy()
            answers = Answers(predicted.astype(int), np.column_stack([1 - p, p]), [0, 1])
            y = y.astype(int)
        elif world.task == "regression":
            answers, y = Answers(predicted.astype(float), None, None), y.astype(float)
        else:
            answers = Answers(predicted.astype(str), None, None)
            y = y.astype(str)
        out[f"{month:%Y-%m}"] = score(world.task, y, answers)
    return out


def scored_rows(world: Any, box: Any, champion: Any, scheduled: "Scheduled | None") -> pd.DataFrame | None:
    """A binary classifier's every replayed row with its label and each strategy's score (P(class 1)): never
    (the champion), scheduled (that month's model) and managed (what the endpoint answered; NaN if it failed).
    None for other tasks: the targets that need it are about AUC."""
    from retrain.components._models import answer

    if world.task != "binary":
        return None
    rows = world.traffic.between(world.start, world.end)
    features = world.traffic.features
    out = pd.DataFrame({"time": pd.to_datetime(rows["time"], utc=True).to_numpy(),
                        "request_id": rows["request_id"].to_numpy(), "label": rows[LABEL].to_numpy(dtype=int),
                        "never": answer(champion, rows, features, world.task).score(world.task)})
    out["time"] = pd.to_datetime(out["time"], utc=True)
    if scheduled is not None:
        out["scheduled"] = np.nan
        for month in months(world.start, world.end):
            mask = ((out["time"] >= month) & (out["time"] < month + pd.offsets.MonthBegin(1))).to_numpy()
            if mask.any():
                model = scheduled.models.get(f"{month:%Y-%m}", champion)
                out.loc[mask, "scheduled"] = answer(model, rows[mask], features, world.task).score(world.task)
    window = Window(world.start.to_pydatetime(), world.end.to_pydatetime())
    served = box.telemetry.fetch(EndpointRef(world.endpoint), window).frame
    answered = served.drop_duplicates("request_id").set_index("request_id")["score"].astype(float)
    out["managed"] = out["request_id"].map(answered)
    return out


@dataclass
class Scheduled:
    """Monthly retraining in a background thread, on data whose labels had arrived by the 1st."""

    world: Any
    runner: Any
    registry: Any
    models: dict[str, Any] = field(default_factory=dict)
    retrains: int = 0
    error: BaseException | None = None

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="scheduled strategy", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        try:
            for month in months(self.world.start, self.world.end)[1:]:  # the first month is the champion's
                self.models[f"{month:%Y-%m}"] = self._train(month)
                self.retrains += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            self.error = exc

    def _train(self, month: pd.Timestamp) -> Any:
        world = self.world
        known = month - pd.Timedelta(world.label_lag)
        since = month - pd.Timedelta(world.entry["lookback"])
        recent = training_frame(world.traffic.between(since, known), world.traffic.features)
        path = world.ws.data_dir / "scheduled" / f"scheduled-{month:%Y-%m}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        recent.to_parquet(path, index=False)
        # the reference is the monitor's first one (the champion's training rows), as for the managed loop
        request = world.request(f"scheduled-{month:%Y-%m}", str(world.ws.reference_path), str(path),
                                {"start": since.isoformat(), "end": known.isoformat()}, month.isoformat(),
                                model=f"{world.model}-monthly", rule=world.entry["rule"])
        ref = self.runner.submit(request, idempotency_key=f"backtest-scheduled-{month:%Y-%m}")
        status = self.runner.wait(ref, timeout=1800)
        if status.model is None:
            raise RuntimeError(f"monthly retrain for {month:%Y-%m} failed at {status.failed_step}: {status.error}")
        return self.registry.load_model(ModelVersion(status.model.name, status.model.version))

    def monthly_metric(self, champion: Any) -> dict[str, float | None]:
        out = {}
        world = self.world
        for month in months(world.start, world.end):
            model = self.models.get(f"{month:%Y-%m}", champion)
            out.update(monthly_metric(world, model, max(month, world.start),
                                      min(month + pd.offsets.MonthBegin(1), world.end)))
        return out
