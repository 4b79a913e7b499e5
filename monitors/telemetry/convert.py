"""Raw telemetry columns -> a TelemetryBatch frame, column at a time; bad rows are counted, never raised.

Both sources end here: the local store hands pyarrow columns, Log Analytics hands the columns of its JSON
response. Inputs are decoded with a typed msgspec decoder built from the feature spec, so the common case
(a valid row) costs one C call; only rows that fail are looked at again in Python to name the reason.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from functools import lru_cache
from operator import attrgetter
from typing import Any, Mapping, Sequence

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa

from core.errors import ValidationFailed
from core.telemetry_store import gc_paused
from core.types import EndpointRef, TelemetryBatch, Window

RESERVED = ("request_id", "time", "deployment", "model_version", "latency_ms", "status_code", "prediction",
            "score", "label")
KINDS = ("numeric", "categorical")
MAX_EXAMPLES = 5
_NON_FINITE_TEXT = {"NaN", "Infinity", "-Infinity", "nan", "inf", "-inf"}


def check_features(features: Mapping[str, str] | None) -> dict[str, str] | None:
    if features is None:
        return None
    for name, kind in features.items():
        if kind not in KINDS:
            raise ValidationFailed(f"feature {name!r}: kind must be one of {KINDS}, got {kind!r}", field=name)
        if name in RESERVED:
            raise ValidationFailed(f"feature {name!r} clashes with a telemetry column", field=name)
    return dict(features)


class Rejections:
    """Which rows are out, why (counted by reason) and a few examples a person can act on."""

    def __init__(self, ids: Sequence[Any]) -> None:
        self.ids = ids
        self.bad = np.zeros(len(ids), dtype=bool)
        self.counts: Counter[str] = Counter()
        self.examples: list[dict[str, Any]] = []

    def reject(self, i: int, reason: str, detail: str, value: Any = None) -> None:
        if self.bad[i]:
            return  # one reason per row, the first found
        self.bad[i] = True
        self.counts[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            shown = value if value is None or isinstance(value, (int, float)) else str(value)[:200]
            self.examples.append({"reason": reason, "request_id": self.ids[i], "detail": detail, "value": shown})


def build_batch(endpoint: EndpointRef, window: Window, raw: Mapping[str, Any],
                features: Mapping[str, str] | None) -> TelemetryBatch:
    """`raw` holds the RESERVED columns plus `inputs` (JSON text per row), as lists or pyarrow arrays."""
    with gc_paused():
        return _build(endpoint, window, raw, features)


def _build(endpoint: EndpointRef, window: Window, raw: Mapping[str, Any],
           features: Mapping[str, str] | None) -> TelemetryBatch:
    ids = _pylist(raw["request_id"])
    rej = Rejections(ids)
    for i, rid in enumerate(ids):
        if not rid:
            rej.reject(i, "missing_field", "request_id is empty", rid)
    times = _times(raw["time"])
    latency = _floats(raw["latency_ms"])
    status = _floats(raw["status_code"])
    _check_column(rej, "time", pd.isna(times))
    _check_column(rej, "latency_ms", np.isnan(latency))
    _check_column(rej, "status_code", np.isnan(status))
    for i in np.flatnonzero(np.isinf(latency)):
        rej.reject(int(i), "non_finite", "latency_ms is not finite", float(latency[i]))
    inputs = decode_inputs(_pylist(raw["inputs"]), features, rej)
    frame = pd.DataFrame({"request_id": ids, "time": times, "deployment": _pylist(raw["deployment"]),
                          "model_version": _pylist(raw["model_version"]), "latency_ms": latency,
                          "status_code": status, **inputs,
                          "prediction": json_column(_pylist(raw["prediction"])), "score": _floats(raw["score"]),
                          "label": json_column(_pylist(raw["label"]))})
    if rej.bad.any():
        frame = frame.loc[~rej.bad].reset_index(drop=True)
    frame["status_code"] = frame["status_code"].astype("int64")
    return TelemetryBatch(endpoint=endpoint, window=window, frame=frame, rejected=dict(rej.counts),
                          rejected_examples=tuple(rej.examples))


def _check_column(rej: Rejections, name: str, missing: np.ndarray) -> None:
    for i in np.flatnonzero(missing):
        rej.reject(int(i), "missing_field", f"{name} is missing")


def decode_inputs(values: list[Any], features: Mapping[str, str] | None, rej: Rejections) -> dict[str, Any]:
    """One column per feature; a row whose inputs do not fit the spec is rejected with its reason."""
    if features is None:
        return _untyped_inputs(values, rej)
    if not features:
        return {}
    decoder = _decoder(tuple(features.items()))
    cells = attrgetter(*features) if len(features) > 1 else (lambda row: (getattr(row, next(iter(features))),))
    blank = (None,) * len(features)
    rows: list[tuple] = [blank] * len(values)
    for i, value in enumerate(values):
        try:
            rows[i] = cells(decoder.decode(value))
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
            reason, detail = classify(value, features, exc)
            rej.reject(i, reason, detail, value)
    transposed = list(zip(*rows, strict=True)) if rows else [() for _ in features]
    columns: dict[str, Any] = {}
    for (name, kind), column in zip(features.items(), transposed, strict=True):
        if kind == "numeric":
            columns[name] = np.array(column, dtype=np.float64)
        else:
            columns[name] = [c if c is None or isinstance(c, str) else str(c) for c in column]
    return columns


@lru_cache(maxsize=64)
def _decoder(features: tuple[tuple[str, str], ...]) -> msgspec.json.Decoder:
    fields = [(name, float | None if kind == "numeric" else str | int | bool | None) for name, kind in features]
    return msgspec.json.Decoder(msgspec.defstruct("Inputs", fields))


def classify(value: Any, features: Mapping[str, str], error: Exception) -> tuple[str, str]:
    """Why a row's inputs did not decode: the slow path, taken only by bad rows."""
    if value is None:
        return "missing_field", "inputs is missing"
    if not isinstance(value, (str, bytes)):
        return "wrong_type", f"inputs is {type(value).__name__}, not JSON text"
    try:
        doc = json.loads(value)  # Python's parser accepts NaN/Infinity, so those are told apart from garbage
    except ValueError as exc:
        return "unparsable_json", f"inputs is not JSON: {exc}"
    if not isinstance(doc, dict):
        return "wrong_type", f"inputs is a JSON {type(doc).__name__}, not an object"
    for name, kind in features.items():
        if name not in doc:
            return "missing_feature", f"feature {name!r} is missing"
        cell = doc[name]
        text_inf = isinstance(cell, str) and cell in _NON_FINITE_TEXT
        if kind == "numeric" and ((isinstance(cell, float) and not math.isfinite(cell)) or text_inf):
            return "non_finite", f"feature {name!r} is {cell}"
        if kind == "numeric" and (isinstance(cell, bool) or not isinstance(cell, (int, float, type(None)))):
            return "wrong_type", f"feature {name!r} should be numeric, got {type(cell).__name__} {cell!r}"
        if kind == "numeric" and isinstance(cell, int) and not math.isfinite(float(cell)):
            return "non_finite", f"feature {name!r} is out of range"
        if kind == "categorical" and not isinstance(cell, (str, int, bool, type(None))):
            return "wrong_type", f"feature {name!r} should be categorical, got {type(cell).__name__}"
    return "wrong_type", f"inputs do not fit the spec: {error}"


def _untyped_inputs(values: list[Any], rej: Rejections) -> dict[str, Any]:
    """No spec: take whatever keys arrive; only unparsable or non-object inputs are rejected."""
    docs: list[dict[str, Any]] = []
    for i, value in enumerate(values):
        try:
            doc = json.loads(value) if isinstance(value, (str, bytes)) else value
        except ValueError as exc:
            rej.reject(i, "unparsable_json", f"inputs is not JSON: {exc}", value)
            doc = {}
        if not isinstance(doc, dict):
            rej.reject(i, "wrong_type" if doc is not None else "missing_field", "inputs is not a JSON object", value)
            doc = {}
        docs.append(doc)
    frame = pd.DataFrame.from_records(docs, index=range(len(docs))) if docs else pd.DataFrame()
    return {str(c): frame[c].to_numpy() for c in frame.columns if c not in RESERVED}


_VALUE_DECODER = msgspec.json.Decoder()


def json_column(values: list[Any]) -> Any:
    """Prediction/label cells are JSON text (or already values): numbers -> float64 with NaN, else objects.

    Each distinct text is decoded once: predictions and labels repeat (classes, 0/1) far more than they vary.
    """
    try:
        decoded = {text: _json_value(text) for text in set(values)}
        out, distinct = [decoded[v] for v in values], decoded.values()
    except TypeError:  # unhashable cells (already-decoded objects): one at a time
        out = [_json_value(v) for v in values]
        distinct = out
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in distinct):
        return np.array(out, dtype=np.float64)
    return np.array([np.nan if v is None else v for v in out], dtype=object)


def _json_value(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        try:
            return _VALUE_DECODER.decode(value)
        except msgspec.DecodeError:
            return value  # a bare string label, not JSON text
    return value


def _pylist(column: Any) -> list[Any]:
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        return column.to_pylist()
    return list(column)


def _floats(column: Any) -> np.ndarray:
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        return column.to_numpy(zero_copy_only=False).astype(np.float64)
    return np.array(column, dtype=np.float64)


def _times(column: Any) -> pd.DatetimeIndex:
    """int64 epoch microseconds (local) or ISO text with up to 7 fractional digits (Log Analytics)."""
    if not isinstance(column, (pa.Array, pa.ChunkedArray)):
        column = pa.array(column, type=pa.string())
    if pa.types.is_integer(column.type):
        return pd.DatetimeIndex(column.cast(pa.timestamp("us", "UTC")).to_pandas()).as_unit("ns")
    try:
        return pd.DatetimeIndex(column.cast(pa.timestamp("ns", "UTC")).to_pandas())
    except pa.ArrowInvalid:  # one unparsable time: parse row by row, that row becomes NaT and is rejected
        return pd.DatetimeIndex(pd.to_datetime(column.to_pylist(), errors="coerce", utc=True, format="ISO8601"))
