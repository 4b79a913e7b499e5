"""Train an arrival-delay regressor (minutes): the product's training contract for a regression model.

    python train.py --data DIR --target COLUMN --task regression --model-out DIR

DIR holds train.parquet (features, target, time column) and schema.json (the feature kinds). Delays have
a long right tail (a few flights hours late), so the model minimises absolute error: its predictions are
medians, which is what the product's primary regression metric (MAE) rewards.
"""
from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

# skops loads only types it is told to trust: these are what this pipeline holds beyond skops' defaults.
TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor", "functools.partial",
           "sklearn.utils.validation.check_array"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--task", choices=("regression",), required=True)
    parser.add_argument("--model-out", type=Path, required=True)
    args = parser.parse_args(argv)
    frame = pd.read_parquet(args.data / "train.parquet")
    kinds = json.loads((args.data / "schema.json").read_text())["features"]
    categorical = [name for name, kind in kinds.items() if kind == "categorical"]
    numeric = [name for name, kind in kinds.items() if kind == "numeric"]
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    model = Pipeline([
        ("columns", ColumnTransformer([("cat", encoder, categorical), ("num", "passthrough", numeric)])),
        ("model", HistGradientBoostingRegressor(
            loss="absolute_error", max_iter=150, learning_rate=0.08, random_state=0,
            categorical_features=[True] * len(categorical) + [False] * len(numeric)))])
    model.fit(frame[categorical + numeric], frame[args.target].astype(float))

    import mlflow.sklearn

    mlflow.sklearn.save_model(model, str(args.model_out), serialization_format="skops", skops_trusted_types=TRUSTED,
                              pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"skops=={version('skops')}"])
    print(f"train: fitted on {len(frame)} rows, median target {frame[args.target].median():.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
