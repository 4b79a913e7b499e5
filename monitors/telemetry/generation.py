"""A generative endpoint's generation record (core.telemetry.Generation) as columns of the telemetry frame.

Columns: prompt, response, context, ground_truth (text, None where absent), tokens_in, tokens_out (float64, NaN
where absent), finish_reason and generation_model (text; the record's `model`, renamed so it never clashes with
a feature called "model"). A spec may name prompt, response, context or ground_truth as `text` features and
tokens_in / tokens_out as `numeric` ones: they are then read from here, not from the inputs.
A generation cell that is not a JSON object, or a field of the wrong type, rejects the row with a reason.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import msgspec
import numpy as np

from core.telemetry import GENERATION_TEXTS

TEXTS = (*GENERATION_TEXTS, "finish_reason", "generation_model")
COUNTS = ("tokens_in", "tokens_out")
COLUMNS = (*TEXTS, *COUNTS)
AS_FEATURES = {**{name: "text" for name in GENERATION_TEXTS}, **{name: "numeric" for name in COUNTS}}
_DECODER = msgspec.json.Decoder()
Reject = Callable[[int, str, str, Any], None]


def split_features(features: Mapping[str, str] | None, present: bool) -> tuple[dict[str, str] | None, list[str]]:
    """(features read from the inputs, features read from the generation record). Without generation records
    in the window every feature comes from the inputs, as before generation fields existed."""
    if features is None or not present:
        return (None if features is None else dict(features)), []
    own = [name for name, kind in features.items() if AS_FEATURES.get(name) == kind]
    return {n: k for n, k in features.items() if n not in own}, own


def has_generation(cells: list[Any]) -> bool:
    return any(cell is not None and cell != "" for cell in cells)


def decode(cells: list[Any], reject: Reject) -> dict[str, np.ndarray]:
    """JSON text (or mappings) per row -> the generation columns."""
    n = len(cells)
    out: dict[str, np.ndarray] = {name: np.full(n, None, dtype=object) for name in TEXTS}
    out.update({name: np.full(n, np.nan) for name in COUNTS})
    for i, cell in enumerate(cells):
        if cell is None or cell == "":
            continue
        doc = _doc(cell)
        if not isinstance(doc, dict):
            reject(i, "wrong_type", "generation is not a JSON object", cell)
            continue
        for name, value in doc.items():
            problem = _store(out, i, "generation_model" if name == "model" else name, value)
            if problem:
                reject(i, "wrong_type", f"generation.{name} {problem}", value)
                break
    return out


def _doc(cell: Any) -> Any:
    if isinstance(cell, Mapping):
        return dict(cell)
    try:
        return _DECODER.decode(cell)
    except (msgspec.DecodeError, TypeError):
        return None


def _store(out: dict[str, np.ndarray], i: int, name: str, value: Any) -> str | None:
    if value is None or name not in out:
        return None  # unknown fields are kept out of the frame, not held against the row
    if name in COUNTS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            return "must be a non-negative number"
        out[name][i] = float(value)
    elif isinstance(value, str):
        out[name][i] = value
    else:
        return "must be text"
    return None
