"""Request records -> typed Arrow columns: how the local store keeps inputs without a JSON text per row.

The store does not know a monitor's features when a request is logged, so every input key is kept with the
type it arrived with, in one column per (key, type): `f:key` floats (NaN and infinities kept: a check counts
them), `i:key` integers, `b:key` booleans, `s:key` text, `j:key` anything else as JSON text (nested values,
dates, integers beyond 64 bits). A row's value sits in exactly one of them; `n:key` marks a key that was
there with a null value, and a row with none of them did not have the key (so a segment written before a
key existed reads as "absent" for it). A check reads the columns of its features and names every row that
does not fit (monitors.telemetry.typed), exactly as it would have from JSON.
Predictions are `prediction` (a number) or `prediction_json` (JSON text of anything else); a generative
endpoint's generation record is `generation` (JSON text).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

from core.telemetry import RequestRecord, to_json_text

if TYPE_CHECKING:
    import pyarrow as pa

KEY_TYPES = {"f": "float64", "i": "int64", "b": "bool", "s": "string", "j": "string", "n": "bool"}
INT64 = (-(2**63), 2**63 - 1)


def kind_of(value: Any) -> str | None:
    """The column a value goes to: f, i, b, s or j; None for a null."""
    if value is None:
        return None
    if isinstance(value, bool) or _numpy(value, "bool_"):
        return "b"
    if isinstance(value, int) or _numpy(value, "integer"):
        return "i" if INT64[0] <= int(value) <= INT64[1] else "j"
    if isinstance(value, float) or _numpy(value, "floating"):
        return "f"
    if isinstance(value, str):
        return "s"
    return "j"


def _numpy(value: Any, kind: str) -> bool:
    module = type(value).__module__
    if module != "numpy":
        return False
    import numpy as np

    return isinstance(value, getattr(np, kind))


def cell(kind: str, value: Any) -> Any:
    if kind == "f":
        return float(value)
    if kind == "i":
        return int(value)
    if kind == "b":
        return bool(value)
    if kind == "s":
        return str(value)
    return to_json_text(value)


def input_columns(rows: Sequence[Any]) -> dict[str, list[Any]]:
    """Inputs (mappings) -> {"<kind>:<key>": cells}, one list per (key, kind) that occurs (kind n: null)."""
    n = len(rows)
    columns: dict[str, list[Any]] = {}
    for i, inputs in enumerate(rows):
        for key, value in inputs.items():
            kind = _PLAIN.get(type(value))  # most values: a float or a str, stored as they are (3x faster)
            if kind is None:
                kind = kind_of(value)
                value = True if kind is None else cell(kind, value)
            name = f"{kind or 'n'}:{key}"
            if name not in columns:
                columns[name] = [None] * n
            columns[name][i] = value
    return columns


_PLAIN = {float: "f", str: "s"}


def prediction_columns(predictions: Sequence[Any]) -> dict[str, list[Any]]:
    kinds = {kind_of(p) for p in predictions}
    if kinds <= {"f", "i", None}:
        return {"prediction": [None if p is None else float(p) for p in predictions]}
    return {"prediction_json": [None if p is None else to_json_text(p) for p in predictions]}


def records_table(records: Sequence[RequestRecord], time_us: Sequence[int]) -> pa.Table:
    """One Arrow table of the records, in the given order, with typed input and prediction columns."""
    import pyarrow as pa

    columns: dict[str, Any] = {
        "time_us": pa.array(time_us, pa.int64()),
        "request_id": pa.array([r.request_id for r in records], pa.string()),
        "deployment": pa.array([r.deployment for r in records], pa.string()),
        "model_version": pa.array([r.model_version for r in records], pa.string()),
        "score": pa.array([_number(r.score) for r in records], pa.float64()),
        "latency_ms": pa.array([float(r.latency_ms) for r in records], pa.float64()),
        "status_code": pa.array([int(r.status_code) for r in records], pa.int64()),
    }
    if any(r.generation for r in records):  # generative endpoints only: a classifier's segment has no such column
        columns["generation"] = pa.array([to_json_text(r.generation.to_json()) if r.generation else None
                                          for r in records], pa.string())
    for name, cells in prediction_columns([r.prediction for r in records]).items():
        columns[name] = pa.array(cells, pa.float64() if name == "prediction" else pa.string())
    for name, cells in input_columns([r.inputs for r in records]).items():
        columns[name] = pa.array(cells, KEY_TYPES[name.split(":", 1)[0]])
    return pa.table(columns)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if not math.isnan(value) else None
