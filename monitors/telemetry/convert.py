"""Raw telemetry columns -> a TelemetryBatch frame, column at a time; bad rows are counted, never raised.

Both sources end here: the local store hands pyarrow columns, Log Analytics hands the columns of its JSON
response. Inputs are decoded by `monitors.telemetry.inputs` (Arrow's JSON reader for plain rows, a typed
msgspec decoder for the rest); only rows that fail are looked at again in Python to name the reason.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable, Mapping, Sequence

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import ValidationFailed
from core.telemetry_store import gc_paused
from core.types import EndpointRef, TelemetryBatch, Window
from monitors.telemetry import generation as gen
from monitors.telemetry.inputs import decode_inputs, decode_untyped

RESERVED = ("request_id", "time", "deployment", "model_version", "latency_ms", "status_code", "prediction",
            "score", "label", "finish_reason", "generation_model")
KINDS = ("numeric", "categorical", "text")  # text decodes as strings, like categorical
MAX_EXAMPLES = 5


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


def build_batch(endpoint: EndpointRef, window: Window, raw: Mapping[str, Any], features: Mapping[str, str] | None,
                *, inputs: Callable[[Rejections, Mapping[str, str] | None], dict[str, Any]] | None = None
                ) -> TelemetryBatch:
    """`raw` holds the RESERVED columns (lists or pyarrow arrays; `prediction` may be decoded already),
    optionally `generation` (JSON text per row, None for requests that are not generative), and `inputs`
    (JSON text per row), unless the `inputs` function decodes them for the features read from the inputs
    (the local store's typed columns)."""
    with gc_paused():
        return _build(endpoint, window, raw, features, inputs)


class ArrowIds:
    """Request ids left in Arrow: a Python string is made only for a rejected row's example."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        self.column = column

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, i: int) -> Any:
        return self.column[i].as_py()


def _build(endpoint: EndpointRef, window: Window, raw: Mapping[str, Any], features: Mapping[str, str] | None,
           decode: Callable[[Rejections], dict[str, Any]] | None) -> TelemetryBatch:
    column = raw["request_id"]
    arrow = isinstance(column, (pa.Array, pa.ChunkedArray))
    ids: Any = ArrowIds(pa.chunked_array([column]) if isinstance(column, pa.Array) else column) if arrow \
        else _pylist(column)
    rej = Rejections(ids)
    empty = pc.or_(pc.is_null(column), pc.equal(column, "")).to_numpy(zero_copy_only=False) if arrow \
        else np.array([not rid for rid in ids], dtype=bool)
    for i in np.flatnonzero(empty):
        rej.reject(int(i), "missing_field", "request_id is empty", ids[int(i)])
    times = _times(raw["time"])
    latency = _floats(raw["latency_ms"])
    status = _status(raw["status_code"])
    _check_column(rej, "time", pd.isna(times))
    _check_column(rej, "latency_ms", np.isnan(latency))
    if status.dtype.kind == "f":
        _check_column(rej, "status_code", np.isnan(status))
    for i in np.flatnonzero(np.isinf(latency)):
        rej.reject(int(i), "non_finite", "latency_ms is not finite", float(latency[i]))
    cells = _generation_cells(raw.get("generation"))
    generated = gen.has_generation(cells)
    features, _ = gen.split_features(features, generated)
    generation = gen.decode(cells, rej.reject) if generated else {}
    if decode is not None:
        inputs = decode(rej, features)
    elif features is None:
        fast = decode_untyped(raw["inputs"])
        inputs = _untyped_inputs(_pylist(raw["inputs"]), rej) if fast is None else \
            {name: column for name, column in fast.items() if name not in RESERVED}
    else:
        inputs = decode_inputs(raw["inputs"], features, rej.reject)
    prediction = raw["prediction"]
    frame = pd.DataFrame({"request_id": _texts(column), "time": times, "deployment": _labels(raw["deployment"]),
                          "model_version": _labels(raw["model_version"]), "latency_ms": latency,
                          "status_code": status, **inputs,
                          **{name: column for name, column in generation.items() if name not in inputs},
                          "prediction": prediction if isinstance(prediction, np.ndarray) else json_column(
                              _pylist(prediction)), "score": _floats(raw["score"]),
                          "label": json_column(raw["label"] if isinstance(raw["label"], (pa.Array, pa.ChunkedArray))
                                               else _pylist(raw["label"]))}, copy=False)  # no block copy
    if rej.bad.any():
        frame = frame.loc[~rej.bad].reset_index(drop=True)
    if frame["status_code"].dtype != np.int64:
        frame["status_code"] = frame["status_code"].astype("int64")
    return TelemetryBatch(endpoint=endpoint, window=window, frame=frame, rejected=dict(rej.counts),
                          rejected_examples=tuple(rej.examples))


def _generation_cells(column: Any) -> list[Any]:
    """A classifier's window (no generation, or all null): no Python object per row."""
    if column is None or (isinstance(column, (pa.Array, pa.ChunkedArray)) and column.null_count == len(column)):
        return []
    return _pylist(column)


def _check_column(rej: Rejections, name: str, missing: np.ndarray) -> None:
    for i in np.flatnonzero(missing):
        rej.reject(int(i), "missing_field", f"{name} is missing")


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


def json_column(values: Any) -> Any:
    """Prediction/label cells are JSON text (or already values): numbers -> float64 with NaN, else objects.

    Each distinct text is decoded once: predictions and labels repeat (classes, 0/1) far more than they vary.
    Arrow text is dictionary-encoded and mapped back by its indices, with no Python object per row.
    """
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return _arrow_json_column(values)
    try:
        decoded = {text: _json_value(text) for text in set(values)}
        out, distinct = [decoded[v] for v in values], decoded.values()
    except TypeError:  # unhashable cells (already-decoded objects): one at a time
        out = [_json_value(v) for v in values]
        distinct = out
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in distinct):
        return np.array(out, dtype=np.float64)
    return np.array([np.nan if v is None else v for v in out], dtype=object)


def _arrow_json_column(values: Any) -> Any:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    # the local store's labels come dictionary-encoded already: their few values decode without a pass per row
    encoded = values if pa.types.is_dictionary(values.type) else values.cast(pa.string()).dictionary_encode()
    distinct = [_json_value(text) for text in encoded.dictionary.to_pylist()]
    index = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)  # -1: the null at the end
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in distinct):
        lookup = np.array([np.nan if v is None else v for v in distinct] + [np.nan], dtype=np.float64)
    else:
        lookup = np.full(len(distinct) + 1, np.nan, dtype=object)
        for i, v in enumerate(distinct):  # one by one: a list value must stay one cell
            lookup[i] = np.nan if v is None else v
    return lookup[index]


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


def _texts(column: Any) -> Any:
    """Ids: many distinct strings, kept in Arrow's buffers (pandas' pyarrow string dtype) rather than as objects."""
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        return pd.arrays.ArrowStringArray(pa.chunked_array([column]) if isinstance(column, pa.Array) else
                                          column.cast(pa.string()))
    return _objects(column)


def _labels(column: Any) -> Any:
    """Deployment and model version: a handful of values repeated, as a categorical."""
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        if not pa.types.is_dictionary(column.type):
            column = column.cast(pa.string()).dictionary_encode()
        return column.to_pandas()
    return _objects(column)


def _objects(column: Any) -> np.ndarray:
    """Text columns as the object array pandas keeps as is (no second conversion)."""
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        return column.to_numpy(zero_copy_only=False)
    out = np.empty(len(column), dtype=object)
    out[:] = column
    return out


def _floats(column: Any) -> np.ndarray:
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        return owned(column.to_numpy(zero_copy_only=False), np.float64)
    return np.array(column, dtype=np.float64)


def owned(values: np.ndarray, dtype: Any) -> np.ndarray:
    """`values` as `dtype`, writable, copied only when it must be: a chunked column's to_numpy is a fresh array
    already, and fresh memory is slow to touch (a second copy of a million rows costs more than the first)."""
    return values.astype(dtype, copy=not values.flags.writeable)


def _status(column: Any) -> np.ndarray:
    """Status codes as int64 when none is missing, else as float64 with NaN for the missing ones."""
    if isinstance(column, (pa.Array, pa.ChunkedArray)) and pa.types.is_integer(column.type) and not column.null_count:
        return owned(column.to_numpy(zero_copy_only=False), np.int64)
    return _floats(column)


def _times(column: Any) -> pd.DatetimeIndex:
    """int64 epoch microseconds (local) or ISO text with up to 7 fractional digits (Log Analytics)."""
    if not isinstance(column, (pa.Array, pa.ChunkedArray)):
        column = pa.array(column, type=pa.string())
    if pa.types.is_integer(column.type):  # microseconds -> nanoseconds in one multiplication (nulls: NaT)
        nanos = (pc.fill_null(column, 0) if column.null_count else column).to_numpy(zero_copy_only=False)
        nanos = owned(nanos, np.int64)
        nanos *= 1000
        if column.null_count:
            nanos[pc.is_null(column).to_numpy(zero_copy_only=False)] = np.iinfo(np.int64).min  # NaT
        return pd.DatetimeIndex(nanos.view("datetime64[ns]")).tz_localize("UTC")
    try:
        return pd.DatetimeIndex(column.cast(pa.timestamp("ns", "UTC")).to_pandas())
    except pa.ArrowInvalid:  # one unparsable time: parse row by row, that row becomes NaT and is rejected
        return pd.DatetimeIndex(pd.to_datetime(column.to_pylist(), errors="coerce", utc=True, format="ISO8601"))
