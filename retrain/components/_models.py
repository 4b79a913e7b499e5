"""MLflow models in, answers out: how evaluate, the backtest, the demo and the endpoint read any model.

Every model goes through `mlflow.pyfunc`, so any flavour works. Loading a model runs code (a pyfunc
model's Python, deserialized objects): load only models from the team's own registry or pipeline.

What `predict` on a DataFrame of the declared features (see _lib.feature_frame) is read as, by task:
  binary      class probabilities: 2-D, columns in the order of the model's classes (scikit-learn's
              `predict_proba`; save with `pyfunc_predict_fn="predict_proba"`), or 1-D P(class 1).
              A 1-D answer of 0/1 integers is read as labels: accuracy only, no AUC or log loss.
  multiclass  2-D class probabilities (a DataFrame's columns name the classes), or 1-D labels.
  regression  numbers, 1-D (or one column).
The class order of a 2-D answer: the DataFrame's columns, else the model's `classes_` (scikit-learn),
else `metadata={"classes": [...]}` saved with the model, else the sorted classes it was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

try:  # as a component script's sibling (the code folder on sys.path) or as part of the product
    from _lib import MLMODEL_FILE, InputError, feature_frame
except ImportError:
    from retrain.components._lib import MLMODEL_FILE, InputError, feature_frame


@dataclass(frozen=True)
class Answers:
    labels: np.ndarray  # predicted class, or value (regression)
    proba: np.ndarray | None  # (rows, classes) probabilities; None when the model answers labels only
    classes: list[Any] | None  # the class of each proba column

    def score(self, task: str) -> np.ndarray:
        """The one number per row the telemetry keeps: P(class 1), the top class's probability, or the value."""
        if task == "regression":
            return self.labels.astype(float)
        if self.proba is None:
            return np.full(len(self.labels), np.nan)
        if task == "binary":
            return self.proba[:, self.classes.index(1)] if 1 in self.classes else np.zeros(len(self.labels))
        return self.proba.max(axis=1)


def mlflow_problem(path: str | Path) -> str | None:
    """Why `path` is not an MLflow model with a python_function flavour, or None if it is one."""
    import yaml

    folder = Path(path)
    if not folder.is_dir() or not any(folder.iterdir()):
        return f"nothing was written to {folder}"
    mlmodel = folder / MLMODEL_FILE
    if not mlmodel.exists():
        found = ", ".join(sorted(p.name for p in folder.iterdir())[:8])
        return f"{folder} is not an MLflow model: no {MLMODEL_FILE} file (found: {found})"
    try:
        doc = yaml.safe_load(mlmodel.read_text()) or {}
    except yaml.YAMLError as exc:
        return f"{mlmodel} is not valid YAML: {exc}"
    if "python_function" not in (doc.get("flavors") or {}):
        return f"{mlmodel} has no python_function flavour, so mlflow.pyfunc cannot load it"
    return None


def load(path: str | Path) -> Any:
    problem = mlflow_problem(path)
    if problem:
        raise InputError(problem)
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(path))


def classes_of(model: Any) -> list[Any] | None:
    try:
        raw = model.get_raw_model()
    except (AttributeError, NotImplementedError):  # pyfunc models of custom flavours have no raw model
        raw = None  # their classes come from the metadata the training step logged
    if raw is not None and getattr(raw, "classes_", None) is not None:
        return [_plain(c) for c in raw.classes_]
    extra = getattr(getattr(model, "metadata", None), "metadata", None) or {}
    return list(extra["classes"]) if extra.get("classes") else None


def answer(model: Any, frame: Any, features: dict[str, str], task: str,
           trained_classes: Sequence[Any] | None = None) -> Answers:
    """Run the model on `frame`'s features and read its answer for `task` (see the module docstring)."""
    import pandas as pd

    raw = model.predict(feature_frame(frame, features))
    columns = None
    if isinstance(raw, pd.DataFrame):
        columns = [_plain(c) for c in raw.columns]
        raw = raw.to_numpy()
    elif isinstance(raw, pd.Series):
        raw = raw.to_numpy()
    values = np.asarray(raw)
    if values.ndim == 2 and values.shape[1] == 1:
        values, columns = values[:, 0], None
    if len(values) != len(frame):
        raise InputError(f"the model answered {len(values)} rows for {len(frame)}")
    if task == "regression":
        return Answers(values.astype(float), None, None)
    if values.ndim == 1:
        return _one_column(values, task)
    classes = columns or classes_of(model) or sorted(_plain(c) for c in (trained_classes or []))
    if len(classes) != values.shape[1]:
        raise InputError(f"the model answered {values.shape[1]} probability columns but its classes are "
                         f"{classes}: save it with metadata={{'classes': [...]}}")
    proba = values.astype(float)
    labels = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    if task == "binary":
        labels = labels.astype(int)
    return Answers(labels, proba, list(classes))


def _one_column(values: np.ndarray, task: str) -> Answers:
    if task == "binary" and values.dtype.kind == "f" and not np.isin(values, (0.0, 1.0)).all():
        p = values.astype(float)  # P(class 1)
        return Answers((p >= 0.5).astype(int), np.column_stack([1 - p, p]), [0, 1])
    labels = values.astype(int) if task == "binary" else values
    return Answers(labels, None, None)


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so classes compare and serialize as the labels in the data do."""
    return value.item() if hasattr(value, "item") else value
