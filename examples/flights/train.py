"""Train the flight-delay model: the product's training contract, as a team's own script implements it.

    python train.py --data DIR --target COLUMN --task binary|multiclass --model-out DIR

DIR holds train.parquet (the features, the target and the time column) and schema.json (which columns are
features and of which kind). The script fits scikit-learn's gradient boosting on the features and writes an
MLflow model to --model-out whose pyfunc answers class probabilities, as the product's evaluation needs.
Nothing here imports the product: it reads a folder and writes a folder.
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
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

# skops refuses to load types it has not been told to trust; these are the ones this pipeline holds (the
# booster's trees, and the input check the column transformer keeps as a partial function).
TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor", "functools.partial",
           "sklearn.utils.validation.check_array"]


def build_model(categorical: list[str], numeric: list[str]) -> Pipeline:
    # Unseen and missing categories become -1, which the booster treats as missing.
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    columns = ColumnTransformer([("cat", encoder, categorical), ("num", "passthrough", numeric)])
    booster = HistGradientBoostingClassifier(
        max_iter=150, learning_rate=0.08, categorical_features=[True] * len(categorical) + [False] * len(numeric),
        random_state=0)
    return Pipeline([("columns", columns), ("model", booster)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--task", choices=("binary", "multiclass"), required=True)
    parser.add_argument("--model-out", type=Path, required=True)
    args = parser.parse_args(argv)
    frame = pd.read_parquet(args.data / "train.parquet")
    kinds = json.loads((args.data / "schema.json").read_text())["features"]
    categorical = [name for name, kind in kinds.items() if kind == "categorical"]
    numeric = [name for name, kind in kinds.items() if kind == "numeric"]
    if frame[args.target].nunique() < 2:
        print(f"train: target {args.target!r} has a single class; nothing to learn", file=sys.stderr)
        return 2
    model = build_model(categorical, numeric).fit(frame[categorical + numeric], frame[args.target])

    import mlflow.sklearn

    # metadata "classes": which class each probability column is, for whoever serves the model
    mlflow.sklearn.save_model(model, str(args.model_out), pyfunc_predict_fn="predict_proba",
                              metadata={"classes": model.classes_.tolist()},
                              serialization_format="skops", skops_trusted_types=TRUSTED,
                              pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"skops=={version('skops')}"])
    print(f"train: fitted on {len(frame)} rows, classes {model.classes_.tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
