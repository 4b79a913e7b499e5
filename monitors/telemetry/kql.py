"""The KQL this service sends to Log Analytics, built per endpoint and time slice; values are escaped, never pasted."""
from __future__ import annotations

import re
from datetime import datetime

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


def _requests(table: str, endpoint: EndpointRef, start: datetime, end: datetime) -> str:
    where = f"Endpoint == {string_literal(endpoint.name)}"
    if endpoint.deployment:
        where += f" and Deployment == {string_literal(endpoint.deployment)}"
    return (f"{table}\n| where TimeGenerated >= {datetime_literal(start)} and TimeGenerated < {datetime_literal(end)}"
            f"\n| where {where}")


def count_query(table: str, endpoint: EndpointRef, start: datetime, end: datetime) -> str:
    return _requests(table, endpoint, start, end) + "\n| count"


def health_query(table: str, endpoint: EndpointRef, start: datetime, end: datetime) -> str:
    return (_requests(table, endpoint, start, end) + "\n| summarize Requests = count(), "
            "Errors = countif(StatusCode >= 500), P95 = percentile(LatencyMs, 95)")


def rows_query(table: str, labels_table: str, endpoint: EndpointRef, start: datetime, end: datetime) -> str:
    """Requests of [start, end) with their latest label; labels arrive later, so the timespan reaches past end."""
    return (
        f"let requests = {_requests(table, endpoint, start, end)};\n"
        f"let labels = {labels_table}\n| where TimeGenerated >= {datetime_literal(start)}\n"
        "| summarize arg_max(TimeGenerated, Label) by RequestId\n| project RequestId, Label;\n"
        "requests\n| join kind=leftouter labels on RequestId\n"
        "| project TimeGenerated, RequestId, Deployment, ModelVersion, Inputs = tostring(Inputs),\n"
        "    Prediction = tostring(Prediction), Score, LatencyMs, StatusCode, Generation = tostring(Generation),\n"
        "    Label = tostring(Label)\n"
        "| order by TimeGenerated asc"
    )
