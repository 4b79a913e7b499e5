"""What a deployment answered, row by row, as the (prediction, score) pair telemetry records.

A scoring script answers a list with one item per row, as Azure ML's MLflow deployments do: class probabilities
(a list per row: binary -> the positive class's probability is the score and the prediction is the class it
crosses 0.5 for; multiclass -> the most probable class and its probability), a number (regression: the value is
both; binary: a probability of class 1 unless it is a 0/1 label), a label (the prediction, no score), or a record
with "prediction" (and "score"). {"predictions": [...], "scores": [...]} is read too. Class names come from the
MLflow model's metadata ("classes"), else 0..k-1. The same reading as retrain.components._models, over JSON.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

Answer = tuple[Any, float | None]


def read_predictions(answer: Any, rows: int, classes: Sequence[Any] | None = None,
                     task: str | None = None) -> list[Answer | None]:
    """One (prediction, score) per row, None for a row whose item cannot be read; ValueError when the answer
    as a whole does not fit the rows."""
    scores = None
    if isinstance(answer, dict) and isinstance(answer.get("predictions"), list):
        answer, scores = answer["predictions"], answer.get("scores")
    if not isinstance(answer, list) or len(answer) != rows:
        size = len(answer) if isinstance(answer, list) else type(answer).__name__
        raise ValueError(f"the deployment answered {size} predictions for {rows} rows")
    out = [_item(item, classes, task) for item in answer]
    if isinstance(scores, list) and len(scores) == rows:
        out = [None if one is None else (one[0], _number(s)) for one, s in zip(out, scores, strict=True)]
    return out


def _item(item: Any, classes: Sequence[Any] | None, task: str | None) -> Answer | None:
    if isinstance(item, dict):
        if "prediction" in item:
            return item["prediction"], _number(item.get("score"))
        if len(item) == 1:
            return _item(next(iter(item.values())), classes, task)
        return None
    if isinstance(item, list):
        return _item(item[0], classes, task) if len(item) == 1 and task == "regression" else _probabilities(
            item, classes)
    if task == "regression":
        value = _number(item)
        return None if value is None else (value, value)
    if task == "binary" and isinstance(item, float) and item not in (0.0, 1.0):
        return int(item >= 0.5), _number(item)  # P(class 1)
    if isinstance(item, (str, int, float, bool)) or item is None:
        return item, None
    return None


def _probabilities(values: list[Any], classes: Sequence[Any] | None) -> Answer | None:
    numbers = [_number(v) for v in values]
    if not numbers or any(v is None for v in numbers):
        return None
    names = list(classes) if classes is not None and len(classes) == len(numbers) else list(range(len(numbers)))
    if len(numbers) == 1:  # a single probability: of the positive class
        return int(numbers[0] >= 0.5), numbers[0]
    if len(numbers) == 2:
        return names[1 if numbers[1] >= 0.5 else 0], numbers[1]
    best = max(range(len(numbers)), key=numbers.__getitem__)
    return names[best], numbers[best]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def model_card(model_dir: str | Path) -> dict[str, Any]:
    """From an MLflow model folder's MLmodel file: the input columns its signature requires and the class names
    its metadata gives (either may be missing: {})."""
    import yaml

    path = Path(model_dir) / "MLmodel"
    if not path.exists():
        return {}
    doc = yaml.safe_load(path.read_text()) or {}
    card: dict[str, Any] = {}
    metadata = doc.get("metadata") or {}
    if isinstance(metadata.get("classes"), list):
        card["classes"] = metadata["classes"]
    inputs = (doc.get("signature") or {}).get("inputs")
    if isinstance(inputs, str):
        specs = json.loads(inputs)
        card["columns"] = [s["name"] for s in specs if isinstance(s, dict) and s.get("name")
                           and s.get("required", True)]
    return card
