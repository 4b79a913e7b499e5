"""Real MLflow models for serving tests: a small scikit-learn pipeline on the flights slice, saved with
`mlflow.sklearn.save_model` (class probabilities from pyfunc, a signature, class names in the metadata)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from tests.unit._retrain_data import FEATURES, LABEL, months

PIP = ["scikit-learn==1.9.1", "pandas==2.3.3"]  # given, so saving does not infer them in a subprocess


def flights_pipeline(seed: int):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    cats = [n for n, k in FEATURES.items() if k == "categorical"]
    nums = [n for n, k in FEATURES.items() if k == "numeric"]
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    columns = ColumnTransformer([("cat", encoder, cats), ("num", "passthrough", nums)])
    booster = HistGradientBoostingClassifier(max_iter=40, categorical_features=[True] * len(cats) + [False] * len(nums),
                                             random_state=seed)
    return Pipeline([("columns", columns), ("model", booster)])


def features(frame):
    """Categoricals as strings (missing stays missing), numerics as floats: what the model is trained on."""
    import pandas as pd

    out = {}
    for name, kind in FEATURES.items():
        column = frame[name]
        out[name] = (column.astype("object").where(column.notna(), None) if kind == "categorical"
                     else pd.to_numeric(column, errors="coerce").astype(float))
    return pd.DataFrame(out, index=frame.index)


def save_flights_model(path: Path, first: int, last: int, rows: int = 1500, seed: int = 0) -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from threadpoolctl import threadpool_limits

    frame = months(first, last, rows, seed)
    x = features(frame)
    with threadpool_limits(1):
        model = flights_pipeline(seed).fit(x, frame[LABEL])
        signature = infer_signature(x, model.predict_proba(x.head(20)))
    mlflow.sklearn.save_model(model, path, serialization_format="cloudpickle", pyfunc_predict_fn="predict_proba",
                              signature=signature, metadata={"classes": [0, 1]}, pip_requirements=PIP)
    return path


def register_flights_model(registry, first: int, last: int, seed: int = 0, run_id: str = "seed"):
    with tempfile.TemporaryDirectory() as tmp:
        path = save_flights_model(Path(tmp) / "model", first, last, seed=seed)
        return registry.register("flights", path, metrics={}, lineage={"run_id": run_id})
