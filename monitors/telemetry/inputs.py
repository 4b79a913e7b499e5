"""Request inputs (JSON text per row) -> one typed column per feature of the spec; bad rows named, never raised.

Two paths give the same answer. The fast one hands rows that look like objects to Arrow's JSON reader,
newline-delimited, so each row is parsed on its own in C straight into columns. Any chunk Arrow refuses
(a wrong type, NaN, garbage), rows with a null or infinite feature and rows that do not look like objects
go through the exact path: a typed msgspec decoder per row, and for the rows that fail, a second look in
Python to name the reason.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from operator import attrgetter
from typing import Any, Callable, Mapping

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

Reject = Callable[[int, str, str, Any], None]
CHUNK = 200_000
_NON_FINITE_TEXT = {"NaN", "Infinity", "-Infinity", "nan", "inf", "-inf"}


def decode_inputs(values: Any, features: Mapping[str, str], reject: Reject) -> dict[str, np.ndarray]:
    """`values`: a list or pyarrow array of JSON text. Returns name -> float64 (numeric) or object array."""
    text = _string_array(values)
    n = len(text)
    columns = {name: np.full(n, np.nan) if kind == "numeric" else np.full(n, None, dtype=object)
               for name, kind in features.items()}
    plain = np.flatnonzero(_looks_plain(text, features)) if n and features else np.empty(0, dtype=np.int64)
    exact = np.ones(n, dtype=bool)
    for start in range(0, len(plain), CHUNK):
        rows = plain[start:start + CHUNK]
        done = _arrow_chunk(text.take(pa.array(rows)), rows, features, columns)
        exact[rows[done]] = False
    slow = np.flatnonzero(exact)
    if len(slow) and features:
        _exact_rows(text.take(pa.array(slow)).to_pylist(), slow, features, columns, reject)
    return columns


def decode_untyped(values: Any) -> dict[str, np.ndarray] | None:
    """No spec: every key becomes a column, types as Arrow infers them. None when any row is not a plain
    object or the types disagree between rows; the caller then takes the row-by-row way."""
    text = _string_array(values)
    if not len(text) or not _looks_plain(text, {}).all():
        return None
    body = _ndjson(text)
    try:
        table = pj.read_json(pa.BufferReader(body), read_options=pj.ReadOptions(
            block_size=max(1 << 20, 2 * _longest(text))), parse_options=pj.ParseOptions(newlines_in_values=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(text):
        return None
    return {name: table[name].to_numpy() for name in table.column_names}


def _ndjson(text: pa.Array) -> pa.Buffer:
    """The rows as one newline-delimited buffer, built in Arrow (no Python string per row)."""
    joined = pc.binary_join_element_wise(text, pa.scalar(""), "\n")
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32)[joined.offset:joined.offset + len(joined) + 1]
    return joined.buffers()[2][int(offsets[0]):int(offsets[-1])]


def _string_array(values: Any) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array) and (pa.types.is_string(values.type) or pa.types.is_null(values.type)):
        return values.cast(pa.string())
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # some inputs arrived as values, not text
        return pa.array([v if v is None or isinstance(v, str) else _text(v) for v in values], type=pa.string())


def _text(value: Any) -> str | None:
    """Inputs that arrived as values rather than text: as JSON text, or a marker the exact path rejects."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError):
        return repr(value)


def _looks_plain(text: pa.Array, features: Mapping[str, str]) -> np.ndarray:
    """Text that starts and ends like an object. A row holding a newline would read as several lines: the
    line count then differs from the row count and the chunk goes the exact way, so no check is needed."""
    mask = pc.and_(pc.is_valid(text), pc.and_(pc.starts_with(text, "{"), pc.ends_with(text, "}")))
    return mask.fill_null(False).to_numpy(zero_copy_only=False)


def _arrow_chunk(text: pa.Array, rows: np.ndarray, features: Mapping[str, str],
                 columns: dict[str, np.ndarray]) -> np.ndarray:
    """Parse a chunk as NDJSON in C; returns which of `rows` were taken (all, none, or all but non-finite)."""
    schema = pa.schema([(name, pa.float64() if kind == "numeric" else pa.string()) for name, kind in features.items()])
    body = _ndjson(text)
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore", newlines_in_values=False)
    try:
        table = pj.read_json(pa.BufferReader(body), parse_options=options,
                             read_options=pj.ReadOptions(block_size=max(1 << 20, 2 * _longest(text))))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return np.zeros(len(rows), dtype=bool)
    if table.num_rows != len(rows):
        return np.zeros(len(rows), dtype=bool)
    taken = np.ones(len(rows), dtype=bool)
    for name, kind in features.items():
        cells = table[name].to_numpy()
        # Arrow reads an absent key as null: rows with a null go the exact way, which tells the two apart.
        taken &= ~np.isnan(cells) if kind == "numeric" else pc.is_valid(table[name]).to_numpy(zero_copy_only=False)
        if kind == "numeric":
            taken &= ~np.isinf(cells)  # 1e999 reads as inf: the exact way names it non_finite
        columns[name][rows] = cells
    return taken


def _longest(text: pa.Array) -> int:
    lengths = pc.binary_length(text)
    return int(pc.max(lengths).as_py() or 0)


def _exact_rows(values: list[Any], rows: np.ndarray, features: Mapping[str, str], columns: dict[str, np.ndarray],
                reject: Reject) -> None:
    decoder = _decoder(tuple(features.items()))
    cells = attrgetter(*features) if len(features) > 1 else (lambda row: (getattr(row, next(iter(features))),))
    names = list(features)
    for i, value in zip(rows.tolist(), values, strict=True):
        try:
            decoded = cells(decoder.decode(value))
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
            reason, detail = classify(value, features, exc)
            reject(i, reason, detail, value)
            continue
        for name, cell in zip(names, decoded, strict=True):
            if features[name] == "numeric":
                columns[name][i] = np.nan if cell is None else cell
            else:
                columns[name][i] = cell if cell is None or isinstance(cell, str) else str(cell)


@lru_cache(maxsize=64)
def _decoder(features: tuple[tuple[str, str], ...]) -> msgspec.json.Decoder:
    fields = [(name, float | None if kind == "numeric" else str | int | bool | None) for name, kind in features]
    return msgspec.json.Decoder(msgspec.defstruct("Inputs", fields, gc=False))


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
        problem = _cell_problem(name, kind, doc[name])
        if problem:
            return problem
    return "wrong_type", f"inputs do not fit the spec: {error}"


def _cell_problem(name: str, kind: str, cell: Any) -> tuple[str, str] | None:
    if kind == "numeric":
        text_inf = isinstance(cell, str) and cell in _NON_FINITE_TEXT
        if (isinstance(cell, float) and not math.isfinite(cell)) or text_inf:
            return "non_finite", f"feature {name!r} is {cell}"
        if isinstance(cell, bool) or not isinstance(cell, (int, float, type(None))):
            return "wrong_type", f"feature {name!r} should be numeric, got {type(cell).__name__} {cell!r}"
        if isinstance(cell, int) and abs(cell) > 1.7e308:
            return "non_finite", f"feature {name!r} is out of range"
    elif not isinstance(cell, (str, int, bool, type(None))):
        return "wrong_type", f"feature {name!r} should be categorical, got {type(cell).__name__}"
    return None
