"""train: fit the scikit-learn pipeline (ordinal-encoded categoricals + gradient boosting), save with joblib."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import joblib
from _lib import (
    META_FILE,
    MODEL_FILE,
    InputError,
    build_model,
    check_columns,
    fail,
    feature_frame,
    labels,
    parse_features,
    read_table,
    write_json,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("train", "features", "label", "model_out"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--random_state", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        features = parse_features(args.features)
        frame = read_table(args.train, "train")
        if frame is None or frame.empty:
            raise InputError(f"--train: no rows in {args.train}")
        check_columns(frame, [*features, args.label], "train")
        y = labels(frame, args.label, "train")
        if len(set(y)) < 2:
            raise InputError(f"--train: label {args.label!r} has a single class; nothing to learn")
    except InputError as exc:
        fail(exc)
    model = build_model(features, args.random_state)
    model.fit(feature_frame(frame, features), y)
    out = Path(args.model_out)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / MODEL_FILE)
    summary_path = Path(args.train) / "summary.json"
    data = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    write_json(out / META_FILE, {"features": features, "label": args.label, "random_state": args.random_state,
                                 "training_rows": len(frame), "training_window": data.get("window"),
                                 "rule": data.get("rule"), "positive_rate": float(y.mean())})
    print(f"train: fitted on {len(frame)} rows, positive rate {y.mean():.3f}")


if __name__ == "__main__":
    main()
