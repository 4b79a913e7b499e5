"""Shared by the component scripts (shipped with them as the component code folder)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the register step needs neither
    import numpy as np
    import pandas as pd

KINDS = ("numeric", "categorical")
MODEL_FILE, META_FILE = "model.joblib", "meta.json"
REFERENCE_FILE = "reference.parquet"  # evaluate's monitoring reference, recorded by register


class InputError(ValueError):
    """Bad input to a step; the message names the field. The script exits with code 2."""


def fail(exc: Exception) -> None:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)


def parse_features(text: str) -> dict[str, str]:
    try:
        features = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--features is not JSON: {exc}") from exc
    if not isinstance(features, dict) or not features:
        raise InputError("--features must be a non-empty JSON object name -> numeric|categorical")
    for name, kind in features.items():
        if kind not in KINDS:
            raise InputError(f"--features: feature {name!r} has kind {kind!r}, expected one of {KINDS}")
    return features


def read_table(path: str | Path | None, what: str) -> pd.DataFrame | None:
    """A Parquet file or a folder of them; None or an empty folder -> None."""
    import pandas as pd

    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            return None
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    if not path.exists():
        raise InputError(f"--{what}: {path} does not exist")
    return pd.read_parquet(path)


def check_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"--{what}: missing column(s) {', '.join(missing)}")


def labels(frame: pd.DataFrame, label: str, what: str) -> np.ndarray:
    import numpy as np

    values = frame[label]
    if values.isna().any():
        raise InputError(f"--{what}: label column {label!r} has {int(values.isna().sum())} missing values")
    y = values.astype(int).to_numpy()
    if not set(np.unique(y)) <= {0, 1}:
        raise InputError(f"--{what}: label column {label!r} must be binary 0/1")
    return y


def feature_frame(frame: pd.DataFrame, features: dict[str, str]) -> pd.DataFrame:
    """Categoricals as strings (missing stays missing), numerics as floats, in the declared order."""
    import pandas as pd

    out = {}
    for name, kind in features.items():
        column = frame[name]
        if kind == "categorical":
            out[name] = column.astype("object").where(column.notna(), None).map(
                lambda v: None if v is None else str(v))
        else:
            out[name] = pd.to_numeric(column, errors="coerce").astype(float)
    return pd.DataFrame(out)


def build_model(features: dict[str, str], random_state: int):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    cats = [n for n, k in features.items() if k == "categorical"]
    nums = [n for n, k in features.items() if k == "numeric"]
    # Unseen and missing categories become -1, which the booster treats as missing.
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    columns = ColumnTransformer([("cat", encoder, cats), ("num", "passthrough", nums)])
    booster = HistGradientBoostingClassifier(
        max_iter=150, learning_rate=0.08, categorical_features=[True] * len(cats) + [False] * len(nums),
        random_state=random_state)
    return Pipeline([("columns", columns), ("model", booster)])


def write_json(path: Path, data: dict) -> None:
    """Strict JSON, written atomically (temp file + rename: a killed step never leaves half a file).

    The one copy of core.files.write_json that lives outside core: component scripts are shipped to Azure ML
    as this folder alone (the component's code), so they cannot import the service's core package.
    """
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(data, indent=2, sort_keys=True, allow_nan=False))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def time_range(frame: pd.DataFrame, time_column: str) -> dict[str, str] | None:
    import pandas as pd

    if frame.empty or time_column not in frame.columns:
        return None
    times = pd.to_datetime(frame[time_column], utc=True)
    return {"start": times.min().isoformat(), "end": times.max().isoformat()}
