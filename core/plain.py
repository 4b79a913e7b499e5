"""Strict JSON values: the one way to turn computed results (numpy, datetimes, tuples) into plain JSON.

`plain(value)` gives what `json.dumps(..., allow_nan=False)` accepts: NaN and infinities become null
(a missing statistic), numpy scalars become Python numbers, arrays/tuples/sets become lists, datetimes
ISO 8601 UTC text, objects with `to_json()` their JSON. Anything else is a bug in the caller (TypeError),
unless a `default` says what it becomes (telemetry keeps a model's odd outputs as text rather than fail).
Telemetry keeps non-finite inputs countable instead: `nonfinite="text"` writes them as "NaN"/"Infinity"
(strict JSON for the Logs Ingestion API), `nonfinite="keep"` leaves them as floats for an encoder that
writes the NaN token (the local telemetry store, which counts them when a check reads them).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Callable, Literal

from core.types import iso

NonFinite = Literal["null", "text", "keep"]


def plain(value: Any, *, nonfinite: NonFinite = "null", default: Callable[[Any], Any] | None = None) -> Any:
    """`value` as plain JSON data (see the module docstring); `nonfinite` says what NaN/inf become."""
    again = {"nonfinite": nonfinite, "default": default}
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _nonfinite(value, nonfinite)
    if isinstance(value, Mapping):
        return {str(k): plain(v, **again) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [plain(v, **again) for v in items]
    if isinstance(value, datetime):
        return iso(value)
    if hasattr(value, "to_json") and callable(value.to_json):
        return plain(value.to_json(), **again)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars (ndim 0) and arrays
        return plain(value.tolist(), **again)
    if hasattr(value, "item") and callable(value.item):
        return plain(value.item(), **again)
    if default is not None:
        return default(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None, **options: Any) -> str:
    """Strict JSON text of `plain(value, default=default)`; options go to json.dumps (indent, sort_keys)."""
    return json.dumps(plain(value, default=default), allow_nan=False, **options)


def _nonfinite(value: float, mode: NonFinite) -> str | None:
    if mode == "null":
        return None
    if mode == "keep":
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def finite(value: Any) -> float | None:
    """A statistic as a finite float, or None when it is missing, NaN or infinite."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
