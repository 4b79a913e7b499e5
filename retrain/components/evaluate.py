"""evaluate: challenger and champion on the same holdout, overall and per slice; writes metrics.json.

Both are MLflow models, loaded with `mlflow.pyfunc` (see _models.py for how an answer is read per task).
metrics.json: {"task", "holdout_rows", "holdout_window", "challenger": report, "champion": report | null,
"flat": {"challenger/auc": ..., "challenger/slice/origin/JFK/auc": ...}} where a report is
{"overall": {metric: value, "rows": n}, "slices": {column: {value: {...}}}} with the task's metrics
(_metrics.py).

reference_out/reference.parquet: the training and holdout rows (features, target, time column) with the
challenger's answers on the holdout rows only, as `prediction` and `score` (out of sample; null on
training rows, whose in-sample answers would inflate the performance baseline and narrow the
prediction-drift baseline): the monitors' reference for this model version once it is promoted.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from _lib import (
    REFERENCE_FILE,
    SCHEMA_FILE,
    SUMMARY_FILE,
    InputError,
    check_columns,
    fail,
    parse_features,
    parse_task,
    read_json,
    read_table,
    targets,
    write_json,
)
from _metrics import PRIMARY, metrics
from _models import Answers, answer, load, mlflow_problem

PREDICTION_COLUMN, SCORE_COLUMN = "prediction", "score"  # the names the monitor specs read answers from


def report(task: str, y: np.ndarray, answers: Answers, frame, slices: list[str]) -> dict:
    out = {"overall": metrics(task, y, answers), "slices": {}}
    for column in slices:
        values = frame[column].astype(str).to_numpy()
        out["slices"][column] = {value: metrics(task, y[values == value], _subset(answers, values == value))
                                 for value in sorted(set(values))}
    return out


def _subset(answers: Answers, keep: np.ndarray) -> Answers:
    return Answers(answers.labels[keep], None if answers.proba is None else answers.proba[keep], answers.classes)


def flatten(role: str, rep: dict) -> dict[str, float]:
    flat = {f"{role}/{k}": v for k, v in rep["overall"].items() if v is not None}
    for column, groups in rep["slices"].items():
        for value, numbers in groups.items():
            safe = value.replace("/", "%2F")
            flat.update({f"{role}/slice/{column}/{safe}/{k}": v for k, v in numbers.items() if v is not None})
    return {k: v for k, v in flat.items() if math.isfinite(v)}


def write_reference(path: Path, task: str, answers: Answers, frames: dict, features: dict[str, str],
                    label: str, time_column: str | None) -> int:
    """Training plus holdout rows in the shape the monitor spec reads; answers on the holdout rows only."""
    import pandas as pd

    columns = [*features, label, *([time_column] if time_column else [])]
    for what, frame in frames.items():
        check_columns(frame, columns, what)
    parts = []
    for what, frame in frames.items():
        part = frame[columns].copy()
        holdout = what == "holdout"
        part[PREDICTION_COLUMN] = pd.Series(answers.labels if holdout else None, index=part.index, dtype=object)
        part[SCORE_COLUMN] = answers.score(task) if holdout else np.nan
        if task == "regression":
            part[PREDICTION_COLUMN] = part[PREDICTION_COLUMN].astype(float)
        parts.append(part)
    rows = pd.concat(parts, ignore_index=True)
    if time_column:  # one type, whatever each source stored: the monitor windows on it
        rows[time_column] = pd.to_datetime(rows[time_column], utc=True)
    path.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(path / REFERENCE_FILE, index=False)
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("model", "holdout", "features", "label", "metrics_out"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--task", default="binary")
    parser.add_argument("--champion")
    parser.add_argument("--train", help="prep's training folder, for the reference written to --reference_out")
    parser.add_argument("--time_column")
    parser.add_argument("--reference_out")
    parser.add_argument("--slices", default="[]", help="JSON list of columns to report per value")
    args = parser.parse_args(argv)
    try:
        task, features = parse_task(args.task), parse_features(args.features)
        slices = json.loads(args.slices)
        if not isinstance(slices, list) or any(s not in features for s in slices):
            raise InputError(f"--slices must be a JSON list of declared features, got {args.slices}")
        holdout = read_table(args.holdout, "holdout")
        if holdout is None or holdout.empty:
            raise InputError(f"--holdout: no rows in {args.holdout}")
        check_columns(holdout, [*features, args.label], "holdout")
        y = targets(holdout, args.label, task, "holdout")
        train = read_table(args.train, "train") if args.train else None
        classes = read_json(Path(args.train) / SCHEMA_FILE).get("classes") if args.train else None
        problem = mlflow_problem(args.model) or (mlflow_problem(args.champion) if args.champion else None)
        if problem:
            raise InputError(problem)
    except InputError as exc:
        fail(exc)
    challenger_answers = answer(load(args.model), holdout, features, task, classes)
    challenger = report(task, y, challenger_answers, holdout, slices)
    champion = None
    if args.champion:
        champion = report(task, y, answer(load(args.champion), holdout, features, task, classes), holdout, slices)
    window = read_json(Path(args.holdout) / SUMMARY_FILE).get("window")
    flat = flatten("challenger", challenger) | (flatten("champion", champion) if champion else {})
    flat["holdout_rows"] = float(len(holdout))
    write_json(Path(args.metrics_out) / "metrics.json", {
        "task": task, "holdout_rows": len(holdout), "holdout_window": window, "challenger": challenger,
        "champion": champion, "flat": flat})
    if args.reference_out:
        try:
            frames = {w: f for w, f in (("train", train), ("holdout", holdout)) if f is not None and not f.empty}
            rows = write_reference(Path(args.reference_out), task, challenger_answers, frames, features,
                                   args.label, args.time_column)
        except InputError as exc:
            fail(exc)
        print(f"evaluate: reference of {rows} rows with the challenger's answers")
    primary = PRIMARY[task]
    print(f"evaluate: challenger {primary} {challenger['overall'].get(primary)}, "
          f"champion {primary} {champion and champion['overall'].get(primary)}")


if __name__ == "__main__":
    main()
