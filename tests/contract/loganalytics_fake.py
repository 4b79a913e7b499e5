"""A Log Analytics workspace at the network edge: an azure.core transport answering `POST /v1/workspaces/{id}/query`.

It understands the KQL our source sends (time range, endpoint, count, label join) well enough to answer with
the service's JSON (tables/columns/rows, 7-digit times, dynamic columns as strings), truncates at its row cap
with a partial error like the service does, and plays scripted faults (429 with Retry-After, 5xx, partial).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
from datetime import datetime
from typing import Any

import requests
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._requests_basic import RestRequestsTransportResponse

from core.telemetry import LabelRecord, RequestRecord, label_row, request_row
from core.types import parse_time

_RANGE = re.compile(r"TimeGenerated >= datetime\(([^)]+)\) and TimeGenerated < datetime\(([^)]+)\)")
_ENDPOINT = re.compile(r'Endpoint == "((?:[^"\\]|\\.)*)"')
_DEPLOYMENT = re.compile(r'Deployment == "((?:[^"\\]|\\.)*)"')
_SAMPLE = re.compile(r'hash\(strcat\(RequestId, "(\d+)"\), (\d+)\) < (\d+)')
_PATH = re.compile(r"^https://api\.loganalytics\.io/v1/workspaces/([^/]+)/query$")
COLUMNS = [("TimeGenerated", "datetime"), ("RequestId", "string"), ("Deployment", "string"),
           ("ModelVersion", "string"), ("Inputs", "string"), ("Prediction", "string"), ("Score", "real"),
           ("LatencyMs", "real"), ("StatusCode", "int"), ("Generation", "string"), ("Label", "string")]
PARTIAL_ERROR = {"code": "PartialError", "message": "There were some errors when processing your query.",
                 "details": [{"code": "EngineError", "message": "Something went wrong processing your query on "
                              "the server.", "innererror": {"code": "-2133196797", "message": "Shard unavailable"}}]}


class FakeCredential:
    def __init__(self) -> None:
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any):
        from azure.core.credentials import AccessToken
        self.calls += 1
        return AccessToken("fake-token", int(time.time()) + 3600)


class FakeLogAnalytics(HttpTransport):
    def __init__(self, workspace_id: str = "ws-1", row_cap: int = 500_000) -> None:
        self.workspace_id, self.row_cap = workspace_id, row_cap
        self.rows: list[dict[str, Any]] = []
        self.labels: list[dict[str, Any]] = []
        self.faults: list[tuple[str, int, dict[str, str], Any]] = []  # (kind, status, headers, body) served first
        self.log: list[tuple[float, int, dict[str, Any]]] = []  # (monotonic time, status answered, body)
        self.outage = False  # every query answers 503 while True
        self._lock = threading.Lock()

    # -- data, as the Logs Ingestion API would have stored it
    def add(self, records: list[RequestRecord]) -> None:
        self.rows.extend(request_row(r) for r in records)

    def add_raw(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def add_labels(self, labels: list[LabelRecord]) -> None:
        self.labels.extend(label_row(x) for x in labels)

    def fail_next(self, status: int, headers: dict[str, str] | None = None, body: Any = None,
                  kind: str = "any") -> None:
        """Serve this answer to the next query of `kind` ("count", "rows" or "any") instead of the data."""
        self.faults.append((kind, status, headers or {}, body))

    def _take_fault(self, kind: str) -> tuple[int, dict[str, str], Any] | None:
        for i, fault in enumerate(self.faults):
            if fault[0] in (kind, "any"):
                return self.faults.pop(i)[1:]
        return None

    def data_queries(self) -> list[dict[str, Any]]:
        return [b for _, status, b in self.log if status == 200 and "| count" not in b["query"]]

    # -- HttpTransport
    def send(self, request, **kwargs: Any):
        body = json.loads(request.content)
        match = _PATH.match(request.url)
        assert match and match.group(1) == self.workspace_id, request.url
        assert request.headers.get("Authorization") == "Bearer fake-token"
        kind = "count" if body["query"].rstrip().endswith("| count") else "rows"
        with self._lock:
            status, headers, answer = self._take_fault(kind) or ((503, {}, None) if self.outage else (200, {}, None))
            self.log.append((time.monotonic(), status, body))
        if status == 200 and answer is None:
            answer = self._answer(body)
        if status == 200 and answer == "partial":
            answer = {**self._answer(body), "error": PARTIAL_ERROR}
        if answer is None:
            answer = {"error": {"code": "ServiceUnavailable" if status >= 500 else "TooManyRequests",
                                "message": f"HTTP {status}"}}
        return _response(request, status, json.dumps(answer).encode(), headers)

    def open(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self): return self
    def __exit__(self, *args: Any) -> None: ...

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        query, (span_start, span_end) = body["query"], _span(body["timespan"])
        start, end = (_kql_time(t) for t in _RANGE.search(query).groups())
        assert span_start <= start and end <= span_end, "timespan must cover the where clause"
        endpoint = _unescape(_ENDPOINT.search(query).group(1))
        deployment = _DEPLOYMENT.search(query)
        hits = [r for r in self.rows if start <= parse_time(r["TimeGenerated"]) < end and r["Endpoint"] == endpoint
                and (deployment is None or r["Deployment"] == _unescape(deployment.group(1)))]
        sample = _SAMPLE.search(query)
        if sample:  # Kusto's hash is xxhash64; any hash that is stable serves the same purpose here
            seed, buckets, below = sample.group(1), int(sample.group(2)), int(sample.group(3))
            hits = [r for r in hits if _stable_hash(r["RequestId"] + seed) % buckets < below]
        if "summarize Requests = count()" in query:
            latencies = sorted(r["LatencyMs"] for r in hits)
            p95 = _quantile(latencies, 0.95) if latencies else "NaN"
            errors = sum(r["StatusCode"] >= 500 for r in hits)
            return {"tables": [{"name": "PrimaryResult", "columns": [
                {"name": "Requests", "type": "long"}, {"name": "Errors", "type": "long"},
                {"name": "P95", "type": "real"}], "rows": [[len(hits), errors, p95]]}]}
        if "grid_bin(" in query:
            return _summary_answer(query, hits)
        if query.rstrip().endswith("| count"):
            return {"tables": [{"name": "PrimaryResult", "columns": [{"name": "Count", "type": "long"}],
                                "rows": [[len(hits)]]}]}
        hits.sort(key=lambda r: parse_time(r["TimeGenerated"]))
        labels = self._latest_labels(span_start, span_end)
        rows = [_row(r, labels.get(r["RequestId"])) for r in hits]
        answer: dict[str, Any] = {"tables": [{"name": "PrimaryResult",
                                              "columns": [{"name": n, "type": t} for n, t in COLUMNS],
                                              "rows": rows[: self.row_cap]}]}
        if len(rows) > self.row_cap:
            answer["error"] = {"code": "PartialError", "message": "Query result set has exceeded the internal "
                               f"record count limit {self.row_cap} records"}
        return answer

    def _latest_labels(self, start: datetime, end: datetime) -> dict[str, Any]:
        latest: dict[str, tuple[datetime, Any]] = {}
        for x in self.labels:
            at = parse_time(x["TimeGenerated"])
            if start <= at < end and (x["RequestId"] not in latest or at >= latest[x["RequestId"]][0]):
                latest[x["RequestId"]] = (at, x["Label"])
        return {k: v for k, (_, v) in latest.items()}


_NUMERIC = re.compile(r'extend v = todouble\(Inputs\["([^"]+)"\]\) \| extend Bin = iff\(.*?grid_bin\(v, '
                      r'real\(([^)]+)\), real\(([^)]+)\), real\(([^)]+)\), real\(([^)]+)\), (\d+)\)')
_EXACT = re.compile(r'summarize Rows = count\(\) by Feature = "([^"]+)", Bin = -3, Key = "", Value = v \| take (\d+)')
_CATEGORY = re.compile(r'extend Bin = iff\(isnull\(Inputs\["([^"]+)"\]\), -1, -2\)')


def _summary_answer(query: str, hits: list[dict[str, Any]]) -> dict[str, Any]:
    """What Kusto answers to kql.summary_query: the same bins, computed the way the KQL says."""
    import math

    def inputs(r: dict[str, Any]) -> dict[str, Any]:
        return json.loads(r["Inputs"]) if isinstance(r["Inputs"], str) else r["Inputs"]

    def number(value: Any) -> float | None:
        try:
            return None if value is None or isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            return None  # todouble("far") is null

    rows: list[list[Any]] = [["", -9, "", None, len(hits), None, None]] if hits else []
    for name, c, scale, low, step, bins in _NUMERIC.findall(query):
        c, scale, low, step, bins = float(c), float(scale), float(low), float(step), int(bins)
        groups: dict[int, list[float]] = {}
        for r in hits:
            v = number(inputs(r).get(name))
            if v is None or not math.isfinite(v):
                groups.setdefault(-1, []).append(math.nan)
                continue
            y = (v - c) / scale
            t = math.copysign(1.0, y) * math.log(abs(y) + math.sqrt(y * y + 1.0)) if y else 0.0
            groups.setdefault(max(0, min(bins + 1, math.floor((t - low) / step) + 1)), []).append(v)
        rows += [[name, b, "", None, len(vs), None if b == -1 else min(vs), None if b == -1 else max(vs)]
                 for b, vs in groups.items()]
    for name, limit in _EXACT.findall(query):
        values: dict[float, int] = {}
        for r in hits:
            v = number(inputs(r).get(name))
            if v is not None and math.isfinite(v):
                values[v] = values.get(v, 0) + 1
        rows += [[name, -3, "", v, n, None, None] for v, n in list(values.items())[: int(limit)]]
    for name in _CATEGORY.findall(query):
        keys: dict[tuple[int, str], int] = {}
        for r in hits:
            cell = inputs(r).get(name)
            key = (-1, "") if cell is None else (-2, cell if isinstance(cell, str) else json.dumps(cell))
            keys[key] = keys.get(key, 0) + 1
        rows += [[name, b, k, None, n, None, None] for (b, k), n in keys.items()]
    columns = [("Feature", "string"), ("Bin", "long"), ("Key", "string"), ("Value", "real"), ("Rows", "long"),
               ("Low", "real"), ("High", "real")]
    return {"tables": [{"name": "PrimaryResult", "columns": [{"name": n, "type": t} for n, t in columns],
                        "rows": rows}]}


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _quantile(ordered: list[float], q: float) -> float:
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _row(r: dict[str, Any], label: Any) -> list[Any]:
    moment = parse_time(r["TimeGenerated"])
    inputs = r["Inputs"] if isinstance(r["Inputs"], str) else json.dumps(r["Inputs"], separators=(",", ":"))
    return [f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z", r["RequestId"], r["Deployment"],
            r["ModelVersion"], inputs, _dyn(r["Prediction"]), r["Score"], r["LatencyMs"], r["StatusCode"],
            _dyn(r.get("Generation")), _dyn(label)]


def _dyn(value: Any) -> str:
    return "" if value is None else json.dumps(value)


def _unescape(text: str) -> str:
    return json.loads(f'"{text}"')


def _kql_time(text: str) -> datetime:
    return parse_time(re.sub(r"\.(\d{6})\dZ$", r".\1Z", text))


def _span(text: str) -> tuple[datetime, datetime]:
    a, b = text.split("/")
    return parse_time(a), parse_time(b)


def _response(request, status: int, body: bytes, headers: dict[str, str]):
    raw = requests.Response()
    raw.status_code, raw.raw, raw.reason = status, io.BytesIO(body), "OK" if status == 200 else "Error"
    raw.headers.update({"Content-Type": "application/json; charset=utf-8", **headers})
    response = RestRequestsTransportResponse(request=request, internal_response=raw, block_size=65536)
    response.read()
    return response
