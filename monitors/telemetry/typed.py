"""Typed input columns of the local store (core.telemetry_columns) -> one column per feature; bad rows named.

Every row that the JSON path (monitors.telemetry.inputs) would reject is rejected here for the same reason:
a feature absent from the row is `missing_feature`; a number where text is due, text or a boolean where a
number is due, or a nested value is `wrong_type`; NaN, infinities and their text forms are `non_finite`.
Column at a time, in Arrow: no Python object per cell except for the few rows that are odd.
Rows written by older versions carry their inputs as JSON text (`inputs`) and are decoded the JSON way.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.telemetry_columns import KEY_TYPES
from monitors.telemetry.inputs import _cell_problem, decode_inputs

Reject = Callable[[int, str, str, Any], None]
NON_FINITE_TEXT = ("NaN", "Infinity", "-Infinity", "nan", "inf", "-inf")


def input_keys(table: pa.Table) -> list[str]:
    """The input keys that have a column, in the order they first appear."""
    keys: dict[str, None] = {}
    for name in table.column_names:
        kind, _, key = name.partition(":")
        if key and kind in KEY_TYPES:
            keys[key] = None
    return list(keys)


def typed_inputs(table: pa.Table, features: Mapping[str, str] | None, reject: Reject) -> dict[str, Any]:
    """Feature name -> column (float64 for numeric features, strings as a categorical otherwise); without
    `features`, every key as the values it holds."""
    legacy = _legacy_rows(table)
    if features is None:
        columns = {key: _untyped(table, key) for key in input_keys(table)}
        if len(legacy):
            _legacy_untyped(table, legacy, columns, reject)
        return columns
    columns = {}
    for name, kind in features.items():
        columns[name] = _numeric(table, name, reject) if kind == "numeric" else _text(table, name, reject)
    if len(legacy):
        decoded = decode_inputs(table["inputs"].take(pa.array(legacy)), features,
                                lambda i, *why: reject(int(legacy[i]), *why))
        for name, values in decoded.items():
            columns[name] = _put(columns[name], legacy, values)
    return columns


def _column(table: pa.Table, kind: str, key: str) -> pa.ChunkedArray | None:
    name = f"{kind}:{key}"
    return table[name] if name in table.column_names else None


def _valid(column: pa.ChunkedArray | None, n: int) -> np.ndarray:
    if column is None:
        return np.zeros(n, dtype=bool)
    return pc.is_valid(column).to_numpy(zero_copy_only=False)


def _legacy_rows(table: pa.Table) -> np.ndarray:
    if "inputs" not in table.column_names:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(_valid(table["inputs"], table.num_rows))


def _absent(table: pa.Table, key: str, legacy: np.ndarray) -> np.ndarray:
    n = table.num_rows
    present = np.zeros(n, dtype=bool)
    for kind in KEY_TYPES:
        present |= _valid(_column(table, kind, key), n)
    present[legacy] = True  # decided by the JSON way
    return ~present


def _numeric(table: pa.Table, name: str, reject: Reject) -> np.ndarray:
    n = table.num_rows
    floats, ints = _column(table, "f", name), _column(table, "i", name)
    others = [_column(table, kind, name) for kind in ("b", "s", "j", "n")]
    if floats is not None and floats.null_count == 0 and ints is None and all(c is None for c in others):
        values = floats.to_numpy()  # the usual case: every row a number, taken as is
        if np.isfinite(values).all():
            return values
    out = np.full(n, np.nan)
    if ints is not None:
        valid = _valid(ints, n)
        out[valid] = ints.to_numpy(zero_copy_only=False)[valid]
    if floats is not None:
        valid = _valid(floats, n)
        values = floats.to_numpy(zero_copy_only=False)
        out[valid] = values[valid]
        for i in np.flatnonzero(valid & ~np.isfinite(values)):
            reject(int(i), "non_finite", f"feature {name!r} is {values[i]}", float(values[i]))
    for i, value in _cells(_column(table, "b", name)):
        reject(i, "wrong_type", f"feature {name!r} should be numeric, got bool {value!r}", value)
    for i, value in _cells(_column(table, "s", name)):
        if value in NON_FINITE_TEXT:
            reject(i, "non_finite", f"feature {name!r} is {value}", value)
        else:
            reject(i, "wrong_type", f"feature {name!r} should be numeric, got str {value!r}", value)
    for i, value in _odd(table, name, "numeric", reject).items():
        out[i] = value
    _missing(table, name, reject)
    return out


def _text(table: pa.Table, name: str, reject: Reject) -> Any:
    """Categorical (and text) features: strings, integers and booleans as text, the rest rejected."""
    n = table.num_rows
    strings = _column(table, "s", name)
    others = [_column(table, kind, name) for kind in ("i", "b", "f", "j", "n")]
    if strings is not None and strings.null_count == 0 and all(c is None for c in others):
        return strings.to_pandas().array if pa.types.is_dictionary(strings.type) else pd.Categorical(
            strings.to_pandas())  # the usual case: every row a category, as a categorical
    if strings is not None and pa.types.is_dictionary(strings.type):
        strings = strings.cast(pa.string())
    parts = [c for c in (strings, _as_text(_column(table, "i", name)), _as_text(_column(table, "b", name)))
             if c is not None]
    for i, value in _cells(_column(table, "f", name)):
        reject(i, "wrong_type", f"feature {name!r} should be categorical, got float {value!r}", value)
    values = _odd(table, name, "categorical", reject)
    _missing(table, name, reject)
    text = pc.coalesce(*parts) if parts else pa.nulls(n, pa.string())
    if values:
        text = pc.coalesce(text, pa.array([values.get(i) for i in range(n)], pa.string()))
    return pd.Categorical(text.to_pandas()) if len(text) else np.full(0, None, dtype=object)


def _as_text(column: pa.ChunkedArray | None) -> pa.ChunkedArray | None:
    if column is None:
        return None
    if pa.types.is_boolean(column.type):  # str(True) == "True", as the JSON way decodes a boolean category
        return pc.if_else(column, "True", "False")
    return pc.cast(column, pa.string())


def _odd(table: pa.Table, name: str, kind: str, reject: Reject) -> dict[int, Any]:
    """JSON-text cells (nested values, big integers, dates): rejected for the JSON way's reason, or kept
    (numbers for numeric features, text for the others)."""
    kept: dict[int, Any] = {}
    for i, text in _cells(_column(table, "j", name)):
        value = json.loads(text)
        problem = _cell_problem(name, kind, value)
        if problem is not None:
            reject(i, problem[0], problem[1], text)
        elif value is not None:
            kept[i] = float(value) if kind == "numeric" else str(value)
    return kept


def _missing(table: pa.Table, name: str, reject: Reject) -> None:
    for i in np.flatnonzero(_absent(table, name, _legacy_rows(table))):
        reject(int(i), "missing_feature", f"feature {name!r} is missing", None)


def _cells(column: pa.ChunkedArray | None) -> list[tuple[int, Any]]:
    """(row, value) of the non-null cells of a column that is usually empty."""
    if column is None or column.null_count == len(column):
        return []
    rows = np.flatnonzero(pc.is_valid(column).to_numpy(zero_copy_only=False))
    return list(zip(rows.tolist(), column.take(pa.array(rows)).to_pylist(), strict=True))


def _put(column: Any, rows: np.ndarray, values: np.ndarray) -> Any:
    if isinstance(column, pd.Categorical):
        column = np.asarray(column, dtype=object)
    column[rows] = values[rows] if len(values) == len(column) else values
    return column


def _untyped(table: pa.Table, key: str) -> Any:
    """No spec: a key's values as they came, numbers as float64 when all are numbers."""
    n = table.num_rows
    typed = {kind: _column(table, kind, key) for kind in KEY_TYPES if kind != "n"}
    present = [kind for kind, column in typed.items() if column is not None and column.null_count < n]
    if present == ["f"] and typed["f"].null_count == 0:
        return typed["f"].to_numpy()  # every row a float: one copy
    if present == ["s"]:  # every value text: a categorical, as the typed path gives a categorical feature
        strings = typed["s"]
        return strings.to_pandas().array if pa.types.is_dictionary(strings.type) else pd.Categorical(
            strings.to_pandas())
    if set(present) <= {"f", "i"}:
        out = np.full(n, np.nan)
        for kind in present:
            valid = _valid(typed[kind], n)
            out[valid] = typed[kind].to_numpy(zero_copy_only=False)[valid]
        return out
    out = np.full(n, None, dtype=object)
    for kind in present:
        if kind == "j":  # nested values and the like: rare, decoded one by one
            for i, value in _cells(typed[kind]):
                out[i] = json.loads(value)
            continue
        valid = _valid(typed[kind], n)  # only valid cells: to_numpy fills a dictionary's nulls with any value
        out[valid] = typed[kind].to_numpy(zero_copy_only=False)[valid]  # strings made in C, not one by one
    return out


class _Shifted:
    """Rejections of a subset of rows, reported at each row's place in the window."""

    def __init__(self, rows: np.ndarray, reject: Reject) -> None:
        self.rows, self._reject = rows, reject

    def reject(self, i: int, reason: str, detail: str, value: Any = None) -> None:
        self._reject(int(self.rows[i]), reason, detail, value)


def _legacy_untyped(table: pa.Table, rows: np.ndarray, columns: dict[str, Any], reject: Reject) -> None:
    from monitors.telemetry.convert import RESERVED, _untyped_inputs

    decoded = _untyped_inputs(table["inputs"].take(pa.array(rows)).to_pylist(), _Shifted(rows, reject))
    for key, values in decoded.items():
        if key in RESERVED:
            continue
        column = columns.get(key)
        if column is None:
            column = columns[key] = np.full(table.num_rows, None, dtype=object)
        elif column.dtype != object and values.dtype == object:
            column = columns[key] = column.astype(object)
        column[rows] = values
