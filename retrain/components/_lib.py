"""Shared by the component scripts (shipped with them as the component code folder).

Only the product's own steps (prep, evaluate, register) use this; the team's training command gets a
folder with `train.parquet` and `schema.json` and needs nothing from here (see docs/training.md).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the register step needs neither
    import numpy as np
    import pandas as pd

KINDS = ("numeric", "categorical", "text")  # text: strings, like categorical (free text, not a code)
TASKS = ("binary", "multiclass", "regression")
TRAIN_FILE, HOLDOUT_FILE, SCHEMA_FILE, SUMMARY_FILE = "train.parquet", "holdout.parquet", "schema.json", "summary.json"
REFERENCE_FILE = "reference.parquet"  # evaluate's monitoring reference, recorded by register
MLMODEL_FILE = "MLmodel"  # what makes a folder an MLflow model


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
        raise InputError("--features must be a non-empty JSON object name -> numeric|categorical|text")
    for name, kind in features.items():
        if kind not in KINDS:
            raise InputError(f"--features: feature {name!r} has kind {kind!r}, expected one of {KINDS}")
    return features


def parse_task(text: str) -> str:
    if text not in TASKS:
        raise InputError(f"--task {text!r}: expected one of {', '.join(TASKS)}")
    return text


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


def targets(frame: pd.DataFrame, target: str, task: str, what: str) -> np.ndarray:
    """The target column as the task needs it: binary 0/1 ints, class labels, or floats.

    Binary targets must be 0/1 (or booleans): which class is "positive" is then not a guess.
    """
    import numpy as np
    import pandas as pd

    values = frame[target]
    if values.isna().any():
        raise InputError(f"--{what}: target column {target!r} has {int(values.isna().sum())} missing values")
    if task == "regression":
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.isna().any():
            raise InputError(f"--{what}: target column {target!r} is not numeric (task regression)")
        return numbers.astype(float).to_numpy()
    if task == "multiclass":
        return values.to_numpy()
    if values.dtype == bool:
        values = values.astype(int)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any() or not set(np.unique(numbers)) <= {0, 1}:
        raise InputError(f"--{what}: target column {target!r} must be 0/1 for task binary "
                         f"(use --task multiclass for other labels)")
    return numbers.astype(int).to_numpy()


def feature_frame(frame: pd.DataFrame, features: dict[str, str]) -> pd.DataFrame:
    """Categoricals and texts as strings (missing stays missing), numerics as floats, in the declared order.

    The training command gets its features in exactly these types, and so does the model when it is
    evaluated and served: what it learned on is what it is asked about.
    """
    import pandas as pd

    out = {}
    for name, kind in features.items():
        column = frame[name]
        if kind in ("categorical", "text"):
            out[name] = column.astype("object").where(column.notna(), None).map(
                lambda v: None if v is None else str(v))
        else:
            out[name] = pd.to_numeric(column, errors="coerce").astype(float)
    return pd.DataFrame(out, index=frame.index)


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


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def time_range(frame: pd.DataFrame, time_column: str) -> dict[str, str] | None:
    import pandas as pd

    if frame.empty or time_column not in frame.columns:
        return None
    times = pd.to_datetime(frame[time_column], utc=True)
    return {"start": times.min().isoformat(), "end": times.max().isoformat()}
