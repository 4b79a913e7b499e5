"""evaluate: challenger and champion on the same holdout, overall and per slice; writes metrics.json.

metrics.json: {"holdout_rows", "holdout_window", "challenger": report, "champion": report | null,
"flat": {"challenger/auc": ..., "challenger/slice/origin/JFK/auc": ...}} where a report is
{"overall": {auc, accuracy, f1, log_loss, rows, positives}, "slices": {column: {value: {...}}}}.

reference_out/reference.parquet: the training and holdout rows (features, label, time column) with the
challenger's probability as `score` on the holdout rows only (out of sample; null on training rows, whose
in-sample scores would inflate the performance baseline and narrow the prediction-drift baseline): the
monitors' reference for this model version once it is promoted.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import joblib
import numpy as np
from _lib import (
    MODEL_FILE,
    REFERENCE_FILE,
    InputError,
    check_columns,
    fail,
    feature_frame,
    labels,
    parse_features,
    read_table,
    write_json,
)

MIN_SLICE_ROWS = 1
SCORE_COLUMN = "score"  # the name the monitor specs read predictions from


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    both = len(np.unique(y)) == 2
    return {"auc": float(roc_auc_score(y, p)) if both else None,
            "accuracy": float(accuracy_score(y, p >= 0.5)),
            "f1": float(f1_score(y, p >= 0.5, zero_division=0.0)),
            "log_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
            "rows": float(len(y)), "positives": float(y.sum())}


def report(model, frame, features: dict[str, str], y: np.ndarray, slices: list[str]) -> dict:
    p = model.predict_proba(feature_frame(frame, features))[:, 1]
    out = {"overall": metrics(y, p), "slices": {}}
    for column in slices:
        values = frame[column].astype(str).to_numpy()
        out["slices"][column] = {value: metrics(y[values == value], p[values == value])
                                 for value in sorted(set(values))}
    return out


def flatten(role: str, rep: dict) -> dict[str, float]:
    flat = {f"{role}/{k}": v for k, v in rep["overall"].items() if v is not None}
    for column, groups in rep["slices"].items():
        for value, numbers in groups.items():
            safe = value.replace("/", "%2F")
            flat.update({f"{role}/slice/{column}/{safe}/{k}": v for k, v in numbers.items() if v is not None})
    return {k: v for k, v in flat.items() if math.isfinite(v)}


def write_reference(path: Path, model, frames: dict, features: dict[str, str], label: str,
                    time_column: str | None) -> int:
    """Training plus holdout rows in the shape the monitor spec reads; scores on the holdout rows only."""
    import numpy as np
    import pandas as pd

    columns = [*features, label, *([time_column] if time_column else [])]
    for what, frame in frames.items():
        check_columns(frame, columns, what)
    parts = []
    for what, frame in frames.items():
        part = frame[columns].copy()
        part[SCORE_COLUMN] = (model.predict_proba(feature_frame(part, features))[:, 1] if what == "holdout"
                              else np.nan)
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
    parser.add_argument("--champion")
    parser.add_argument("--train", help="the training rows, for the reference written to --reference_out")
    parser.add_argument("--time_column")
    parser.add_argument("--reference_out")
    parser.add_argument("--slices", default="[]", help="JSON list of columns to report per value")
    args = parser.parse_args(argv)
    try:
        features = parse_features(args.features)
        slices = json.loads(args.slices)
        if not isinstance(slices, list) or any(s not in features for s in slices):
            raise InputError(f"--slices must be a JSON list of declared features, got {args.slices}")
        holdout = read_table(args.holdout, "holdout")
        if holdout is None or holdout.empty:
            raise InputError(f"--holdout: no rows in {args.holdout}")
        check_columns(holdout, [*features, args.label], "holdout")
        y = labels(holdout, args.label, "holdout")
        train = read_table(args.train, "train") if args.train else None
        champion_file = Path(args.champion) / MODEL_FILE if args.champion else None
        if champion_file is not None and not champion_file.exists():
            raise InputError(f"--champion: no {MODEL_FILE} in {args.champion}")
    except InputError as exc:
        fail(exc)
    model = joblib.load(Path(args.model) / MODEL_FILE)
    challenger = report(model, holdout, features, y, slices)
    champion = report(joblib.load(champion_file), holdout, features, y, slices) if champion_file else None
    summary_path = Path(args.holdout) / "summary.json"
    window = json.loads(summary_path.read_text()).get("window") if summary_path.exists() else None
    flat = flatten("challenger", challenger) | (flatten("champion", champion) if champion else {})
    flat["holdout_rows"] = float(len(holdout))
    write_json(Path(args.metrics_out) / "metrics.json", {
        "holdout_rows": len(holdout), "holdout_window": window, "challenger": challenger,
        "champion": champion, "flat": flat})
    if args.reference_out:
        try:
            frames = {w: f for w, f in (("train", train), ("holdout", holdout)) if f is not None and not f.empty}
            rows = write_reference(Path(args.reference_out), model, frames, features, args.label, args.time_column)
        except InputError as exc:
            fail(exc)
        print(f"evaluate: reference of {rows} rows with the challenger's scores")
    auc = challenger["overall"]["auc"]
    print(f"evaluate: challenger auc {auc}, champion auc {champion and champion['overall']['auc']}")


if __name__ == "__main__":
    main()
