"""The KQL this service sends to Log Analytics, built per endpoint and time slice; values are escaped, never pasted."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from core.errors import ValidationFailed
from core.types import EndpointRef, utc

# Projected in this order; `convert` and the response decoder rely on it.
RESULT_COLUMNS = ("TimeGenerated", "RequestId", "Deployment", "ModelVersion", "Inputs", "Prediction", "Score",
                  "LatencyMs", "StatusCode", "Generation", "Label")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def table_name(name: str, field: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValidationFailed(f"{field} {name!r} is not a Log Analytics table name", field=field)
    return name


def string_literal(value: str) -> str:
    """A KQL double-quoted string literal: backslash, quote and control characters escaped."""
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
               .replace("\t", "\\t"))
    return f'"{escaped}"'


def datetime_literal(moment: datetime) -> str:
    moment = utc(moment)
    return f"datetime({moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z)"


SAMPLE_BUCKETS = 1_000_000


def _requests(table: str, endpoint: EndpointRef, start: datetime, end: datetime,
              sample: tuple[float, int] | None = None) -> str:
    where = f"Endpoint == {string_literal(endpoint.name)}"
    if endpoint.deployment:
        where += f" and Deployment == {string_literal(endpoint.deployment)}"
    if sample is not None:  # a request is in the sample by the hash of its id: the same rows on every query
        fraction, seed = sample
        where += (f" and hash(strcat(RequestId, {string_literal(str(int(seed)))}), {SAMPLE_BUCKETS}) < "
                  f"{round(fraction * SAMPLE_BUCKETS)}")
    return (f"{table}\n| where TimeGenerated >= {datetime_literal(start)} and TimeGenerated < {datetime_literal(end)}"
            f"\n| where {where}")


def count_query(table: str, endpoint: EndpointRef, start: datetime, end: datetime,
                sample: tuple[float, int] | None = None) -> str:
    return _requests(table, endpoint, start, end, sample) + "\n| count"


def health_query(table: str, endpoint: EndpointRef, start: datetime, end: datetime) -> str:
    return (_requests(table, endpoint, start, end) + "\n| summarize Requests = count(), "
            "Errors = countif(StatusCode >= 500), P95 = percentile(LatencyMs, 95)")


def rows_query(table: str, labels_table: str, endpoint: EndpointRef, start: datetime, end: datetime,
               sample: tuple[float, int] | None = None) -> str:
    """Requests of [start, end) with their latest label; labels arrive later, so the timespan reaches past end.
    `sample` (fraction, seed): only the requests whose id hashes below the fraction."""
    return (
        f"let requests = {_requests(table, endpoint, start, end, sample)};\n"
        f"let labels = {labels_table}\n| where TimeGenerated >= {datetime_literal(start)}\n"
        "| summarize arg_max(TimeGenerated, Label) by RequestId\n| project RequestId, Label;\n"
        "requests\n| join kind=leftouter labels on RequestId\n"
        "| project TimeGenerated, RequestId, Deployment, ModelVersion, Inputs = tostring(Inputs),\n"
        "    Prediction = tostring(Prediction), Score, LatencyMs, StatusCode, Generation = tostring(Generation),\n"
        "    Label = tostring(Label)\n"
        "| order by TimeGenerated asc"
    )


# --- window summaries: only per-bin counts travel (monitors.drift.summary) -----------------------------------
SUMMARY_COLUMNS = ("Feature", "Bin", "Key", "Value", "Rows", "Low", "High")
SUMMARY_MISSING, SUMMARY_CATEGORY, SUMMARY_VALUE, SUMMARY_TOTAL = -1, -2, -3, -9
_BIN_FUNCTION = (  # the grid's bin of v (monitors.drift.summary.Grid.index): asinh written out, as numpy and Spark do
    "let grid_bin = (v: real, c: real, s: real, low: real, step: real, bins: long) {\n"
    "    let y = (v - c) / s;\n"
    "    max_of(0, min_of(bins + 1, tolong(floor((sign(y) * log(abs(y) + sqrt(y * y + 1.0)) - low) / step)) + 1))\n"
    "};\n")


def _real(value: float) -> str:
    return f"real({float(value)!r})"


def summary_query(table: str, endpoint: EndpointRef, start: datetime, end: datetime, spec: Any,
                  exact_limit: int = 4096) -> str:
    """One query for a window's summary: per numeric feature the rows per grid bin with their min and max
    (plus each value's count while the reference has few), per categorical feature the rows per value, and
    the window's row count. Result columns: SUMMARY_COLUMNS; `Bin` says what a row is (see SUMMARY_*)."""
    parts = [f"window | summarize Rows = count() by Feature = \"\", Bin = {SUMMARY_TOTAL}, Key = \"\", "
             "Value = real(null) | extend Low = real(null), High = real(null)"]
    for name, grid in spec.grids.items():
        value = f"todouble(Inputs[{string_literal(name)}])"
        finite = "isnotnull(v) and not(isnan(v)) and not(isinf(v))"
        parts.append(
            f"window | extend v = {value} | extend Bin = iff({finite}, grid_bin(v, {_real(grid.centre)}, "
            f"{_real(grid.scale)}, {_real(grid.low)}, {_real(grid.step)}, {int(grid.bins)}), {SUMMARY_MISSING})\n"
            f"    | summarize Rows = count(), Low = min(v), High = max(v) by Feature = {string_literal(name)}, Bin, "
            "Key = \"\", Value = real(null)")
        if name in spec.exact:
            parts.append(
                f"window | extend v = {value} | where {finite}\n"
                f"    | summarize Rows = count() by Feature = {string_literal(name)}, Bin = {SUMMARY_VALUE}, "
                f"Key = \"\", Value = v | take {int(exact_limit) + 1} | extend Low = real(null), High = real(null)")
    for name in spec.categorical:
        cell = f"Inputs[{string_literal(name)}]"
        parts.append(
            f"window | extend Bin = iff(isnull({cell}), {SUMMARY_MISSING}, {SUMMARY_CATEGORY}), "
            f"Key = iff(isnull({cell}), \"\", tostring({cell}))\n"
            f"    | summarize Rows = count() by Feature = {string_literal(name)}, Bin, Key, Value = real(null)"
            " | extend Low = real(null), High = real(null)")
    union = ",\n".join(f"({p})" for p in parts)
    return (f"{_BIN_FUNCTION}let window = {_requests(table, endpoint, start, end)};\n"
            f"union {union}\n| project {', '.join(SUMMARY_COLUMNS)}")


def summary_from_rows(spec: Any, rows: list[list[Any]]) -> Any:
    """The rows of summary_query's answer -> monitors.drift.summary.WindowSummary."""
    from monitors.drift.summary import EXACT_VALUES

    summary = spec.empty()
    exact_counts: dict[str, int] = {}
    for feature, kind, key, value, count, low, high in rows:
        count = int(count)
        if kind == SUMMARY_TOTAL:
            summary.rows += count
            continue
        part = summary.columns[feature]
        if kind == SUMMARY_MISSING:
            part.missing += count
        elif kind == SUMMARY_CATEGORY:
            part.counts[key] = part.counts.get(key, 0) + count
        elif kind == SUMMARY_VALUE:
            if part.values is not None:
                part.values[float(value)] = part.values.get(float(value), 0) + count
                exact_counts[feature] = exact_counts.get(feature, 0) + 1
        else:
            part.counts[int(kind)] += count
            part.low, part.high = min(part.low, float(low)), max(part.high, float(high))
    for feature, distinct in exact_counts.items():
        if distinct > EXACT_VALUES:  # the query took one more than the limit: too many to be exact
            summary.columns[feature].values = None
    return summary
