"""LogAnalyticsTelemetrySource: one endpoint's window from a Log Analytics workspace, through azure-monitor-query.

The row count is asked first (through the SDK's `query_workspace`); a window above `max_rows_per_query` is cut
into equal time slices, and a slice that still comes back at the row cap is halved again, so skewed traffic
is handled too. Slices are half-open, so no row is read twice or missed at a border. Rows are read from the
raw JSON response sent through the client's own pipeline (auth, retries honouring Retry-After) and decoded
column-wise: the SDK's LogsTableRow objects cost about 1 s per 100k rows before any conversion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import chain, pairwise
from operator import attrgetter
from typing import Any, Callable, Mapping
from urllib.parse import quote

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import PermanentError, TelemetryUnavailable
from core.telemetry import DeploymentHealth
from core.telemetry_store import gc_paused
from core.types import EndpointRef, TelemetryBatch, Window
from monitors.telemetry import kql
from monitors.telemetry.convert import build_batch, check_features

_RAW_NAMES = {"TimeGenerated": "time", "RequestId": "request_id", "Deployment": "deployment",
              "ModelVersion": "model_version", "Inputs": "inputs", "Prediction": "prediction", "Score": "score",
              "LatencyMs": "latency_ms", "StatusCode": "status_code", "Generation": "generation", "Label": "label"}
_Text = str | None
_Number = float | str | None  # Kusto writes NaN and infinities of real columns as strings
_DYNAMIC = ("inputs", "prediction", "generation", "label")  # tostring(dynamic): JSON text, "" for null


class _Row(msgspec.Struct, array_like=True, gc=False):
    """One row in RESULT_COLUMNS order. gc=False: a million rows must not be walked by the cyclic GC."""

    time: _Text
    request_id: _Text
    deployment: _Text
    model_version: _Text
    inputs: _Text
    prediction: _Text
    score: _Number
    latency_ms: _Number
    status_code: int | None
    generation: _Text
    label: _Text


class _Column(msgspec.Struct):
    name: str
    type: str = ""


class _Table(msgspec.Struct):
    columns: list[_Column]
    rows: list[_Row]
    name: str = ""


class _Response(msgspec.Struct):
    tables: list[_Table] = []
    error: dict[str, Any] | None = None


_DECODER = msgspec.json.Decoder(_Response)


class _SummaryTable(msgspec.Struct):
    columns: list[_Column]
    rows: list[tuple[str, int, str, float | None, int, _Number, _Number]]
    name: str = ""


class _SummaryResponse(msgspec.Struct):
    tables: list[_SummaryTable] = []
    error: dict[str, Any] | None = None


_SUMMARY_DECODER = msgspec.json.Decoder(_SummaryResponse)
_RETRY_METHODS = frozenset({"GET", "POST"})


@dataclass(frozen=True)
class QueryColumns:
    """One response, column-wise: raw names (time, request_id, ...) -> list or Arrow array of cells."""

    columns: dict[str, Any]
    rows: int
    error: Mapping[str, Any] | None


def _decode(decoder: Any, body: bytes, what: str) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise PermanentError(f"Log Analytics answered {what} of an unexpected shape: {exc}",
                             reason="TelemetrySchemaMismatch") from exc


def columns_from_response(body: bytes) -> QueryColumns:
    """The Log Analytics query response JSON -> columns, without a Python object per row beyond the cells."""
    with gc_paused():
        doc = _decode(_DECODER, body, "rows")
        if not doc.tables:
            return QueryColumns({raw: [] for raw in _RAW_NAMES.values()}, 0, doc.error)
        table = doc.tables[0]
        names = tuple(c.name for c in table.columns)
        if names != kql.RESULT_COLUMNS:
            raise PermanentError(f"Log Analytics answered columns {names}, expected {kql.RESULT_COLUMNS}",
                                 reason="TelemetrySchemaMismatch")
        columns = {raw: list(map(attrgetter(raw), table.rows)) for raw in _RAW_NAMES.values()}
        for raw in _DYNAMIC:
            text = pa.array(columns[raw], type=pa.string())
            columns[raw] = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        return QueryColumns(columns, len(table.rows), doc.error)


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], (pa.Array, pa.ChunkedArray)):
        return pa.chunked_array(parts, type=pa.string())
    return list(chain.from_iterable(parts))


class LogAnalyticsTelemetrySource:
    """Conforms to core.ports.TelemetrySource. Identity-based: DefaultAzureCredential unless one is given.

    `client_kwargs` go to LogsQueryClient (e.g. `transport=`, `retry_total=`, `retry_backoff_factor=`).
    `label_horizon` is how long after a window its labels are still looked for.
    """

    def __init__(self, workspace_id: str, *, credential: Any = None, client: Any = None,
                 table: str = "MLRequests_CL", labels_table: str = "MLLabels_CL",
                 features: Mapping[str, str] | None = None, max_rows_per_query: int = 500_000,
                 server_timeout_s: int = 180, label_horizon: timedelta = timedelta(days=30),
                 now: Callable[[], datetime] | None = None, **client_kwargs: Any) -> None:
        self.workspace_id = workspace_id
        self.table = kql.table_name(table, "table")
        self.labels_table = kql.table_name(labels_table, "labels_table")
        self.features = check_features(features)
        self.max_rows = max_rows_per_query
        self.server_timeout_s = server_timeout_s
        self.label_horizon = label_horizon
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._client = client or _make_client(credential, client_kwargs)
        self.queries = 0

    def fetch(self, endpoint: EndpointRef, window: Window) -> TelemetryBatch:
        return self._fetch(endpoint, window, None)

    def sample(self, endpoint: EndpointRef, window: Window, fraction: float, seed: int = 0) -> TelemetryBatch:
        """A uniform sample of the window chosen in the workspace (a request is in it by the hash of its id and
        `seed`: the same requests on every read), as a fetch would give it; only the sample travels."""
        return self._fetch(endpoint, window, (fraction, seed) if fraction < 1 else None)

    def _fetch(self, endpoint: EndpointRef, window: Window, sample: tuple[float, int] | None) -> TelemetryBatch:
        total = self.count(endpoint, window, sample)
        parts: list[QueryColumns] = []
        if total:
            # Headroom: a slice planned at the cap would come back at the cap and be split again anyway.
            for piece in _slices(window, math.ceil(total / (self.max_rows * 0.8))):
                parts.extend(self._read(endpoint, piece, sample))
        if len(parts) == 1:
            columns = parts[0].columns
        elif parts:
            columns = {raw: _concat([part.columns[raw] for part in parts]) for raw in _RAW_NAMES.values()}
        else:
            columns = {raw: [] for raw in _RAW_NAMES.values()}
        return build_batch(endpoint, window, columns, self.features)

    def count(self, endpoint: EndpointRef, window: Window, sample: tuple[float, int] | None = None) -> int:
        result = self._small_query(kql.count_query(self.table, endpoint, window.start, window.end, sample), window)
        return int(result.tables[0].rows[0][0]) if result.tables and result.tables[0].rows else 0

    def deployment_health(self, endpoint: str, deployment: str, since: datetime, until: datetime) -> DeploymentHealth:
        """HealthReader: request count, server errors and p95 latency of one deployment, computed by the service."""
        window = Window(since, until)
        result = self._small_query(kql.health_query(self.table, EndpointRef(endpoint, deployment), since, until),
                                   window)
        requests, errors, p95 = result.tables[0].rows[0] if result.tables[0].rows else (0, 0, None)
        requests, errors = int(requests or 0), int(errors or 0)
        p95 = float(p95) if requests and p95 not in (None, "NaN") else None
        return DeploymentHealth(requests=requests, errors=errors, error_rate=errors / requests if requests else 0.0,
                                p95_latency_ms=p95)

    def _small_query(self, query: str, window: Window) -> Any:
        """A query with a one-row answer, through the SDK's own query_workspace; a partial answer is refused."""
        from azure.core.exceptions import AzureError, HttpResponseError
        from azure.monitor.query import LogsQueryPartialResult

        self.queries += 1
        try:
            result = self._client.query_workspace(self.workspace_id, query, timespan=(window.start, window.end),
                                                  server_timeout=self.server_timeout_s,
                                                  retry_on_methods=_RETRY_METHODS)
        except HttpResponseError as exc:
            raise _http_error(exc.status_code, str(exc.message)) from exc
        except AzureError as exc:
            raise TelemetryUnavailable(f"Log Analytics cannot be reached: {exc}") from exc
        if isinstance(result, LogsQueryPartialResult):
            raise TelemetryUnavailable(f"Log Analytics answered only partly: {result.partial_error}")
        return result

    def _read(self, endpoint: EndpointRef, piece: Window, sample: tuple[float, int] | None) -> list[QueryColumns]:
        answer = self._query(kql.rows_query(self.table, self.labels_table, endpoint, piece.start, piece.end, sample),
                             piece.start, max(piece.end, min(self._now(), piece.end + self.label_horizon)))
        if answer.rows < self.max_rows:
            if answer.error:  # truncation aside, a partial answer is never taken for the whole window
                raise TelemetryUnavailable(f"Log Analytics answered {piece.key()} only partly: {answer.error}")
            return [answer]
        # At the row cap the answer may be truncated: halve the slice (skewed traffic) and read both halves.
        halves = _slices(piece, 2)
        if len(halves) < 2:
            raise PermanentError(f"more than {self.max_rows} requests within {piece.key()}: cannot slice further",
                                 reason="TelemetryTooDense")
        return [part for half in halves for part in self._read(endpoint, half, sample)]

    def _query(self, query: str, start: datetime, end: datetime) -> QueryColumns:
        return columns_from_response(self._post(query, start, end))

    def summarize(self, endpoint: EndpointRef, window: Window, spec: Any) -> Any:
        """The window's summary (monitors.drift.summary) computed in the workspace: one query, whose answer
        is per-bin counts (a few thousand rows per feature), whatever the window's size."""
        body = self._post(kql.summary_query(self.table, endpoint, window.start, window.end, spec),
                          window.start, window.end)
        with gc_paused():
            doc = _decode(_SUMMARY_DECODER, body, "a summary")
        if doc.error:  # a summary missing some rows would understate the window
            raise TelemetryUnavailable(f"Log Analytics answered {window.key()} only partly: {doc.error}")
        table = doc.tables[0] if doc.tables else None
        if table is not None and tuple(c.name for c in table.columns) != kql.SUMMARY_COLUMNS:
            raise PermanentError(f"Log Analytics answered columns {[c.name for c in table.columns]}, expected "
                                 f"{kql.SUMMARY_COLUMNS}", reason="TelemetrySchemaMismatch")
        return kql.summary_from_rows(spec, [tuple(r) for r in table.rows] if table is not None else [])

    def _post(self, query: str, start: datetime, end: datetime) -> bytes:
        from azure.core.exceptions import AzureError
        from azure.core.rest import HttpRequest

        body = {"query": query, "timespan": f"{_iso(start)}/{_iso(end)}"}
        request = HttpRequest("POST", f"/workspaces/{quote(self.workspace_id, safe='')}/query", json=body,
                              headers={"Prefer": f"wait={self.server_timeout_s}"})
        self.queries += 1
        try:
            # A query only reads, so POST is as safe to retry as GET (the SDK's default list leaves POST out).
            # stream=True: the pipeline would otherwise json.loads the whole body into Python objects first.
            response = self._client.send_request(request, stream=True, retry_on_methods=_RETRY_METHODS)
            response.read()
        except AzureError as exc:
            raise TelemetryUnavailable(f"Log Analytics cannot be reached: {exc}") from exc
        if response.status_code >= 400:
            raise _http_error(response.status_code, response.text()[:500])
        return response.content


def _make_client(credential: Any, client_kwargs: dict[str, Any]) -> Any:
    from azure.monitor.query import LogsQueryClient

    if credential is None:
        from azure.identity import DefaultAzureCredential
        credential = DefaultAzureCredential()
    # The SDK default (10 retries up to 120 s apart) can outlast a function's timeout; the host retries later.
    options = {"retry_total": 4, "retry_status": 4, "retry_backoff_max": 30, **client_kwargs}
    return LogsQueryClient(credential, **options)


def _http_error(status: int | None, detail: str) -> Exception:
    """What the retry policy could not absorb: throttling and server faults stay retryable for the host."""
    if status is None or status in (408, 429) or status >= 500:
        return TelemetryUnavailable(f"Log Analytics failed with HTTP {status} after retries: {detail}")
    return PermanentError(f"Log Analytics rejected the query with HTTP {status}: {detail}",
                          reason="TelemetryQueryRejected")


def _slices(window: Window, parts: int) -> list[Window]:
    """`parts` adjacent half-open windows covering `window`, cut on whole microseconds."""
    span_us = (window.end - window.start) // timedelta(microseconds=1)
    parts = max(1, min(parts, span_us))
    cuts = [window.start + timedelta(microseconds=span_us * k // parts) for k in range(parts)] + [window.end]
    return [Window(a, b) for a, b in pairwise(cuts)]


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
