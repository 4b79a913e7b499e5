"""Azure ML's data collector as a telemetry source: the JSON-lines files its `Collector` writes, read as they lie.

Layout (Azure ML docs, "Collect production data from models deployed for real-time inferencing"): under the
datastore path (default `modelDataCollector`) each collection writes
`{endpoint}/{deployment}/{collection}/{yyyy}/{MM}/{dd}/{HH}/{instance_id}.jsonl` (the `HH` folder with the
default hourly rolling rate, none with daily). Each line is one CloudEvent-like object: `data` holds the logged
DataFrame as a list of row objects (`to_json(orient="records")`), `correlationid` ties a `model_inputs` line to
its `model_outputs` line, `time` is when it was collected, `modelversion` the model's. The collector batches
requests that arrive close together into one line, so rows of one correlation id are matched by position.

Request ids: the logged `id_column` when the team logs one (the docs' advice for joining ground truth), else
the correlation id, suffixed `/i` for the i-th row of a batched line. Labels come from a table the team names
(Parquet or CSV files, one or many, with an id column and a label column), joined on that request id.
The collector carries no latency or status code: the health signal says "insufficient" for such monitors.
A bad line or row is counted by reason in `batch.rejected`, never raised. An unreachable store raises
TelemetryUnavailable (retryable), so the check is retried, not skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Iterator, Mapping

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pj

from core.errors import ValidationFailed
from core.types import EndpointRef, TelemetryBatch, Window
from monitors.telemetry import generation
from monitors.telemetry.blobfiles import Files
from monitors.telemetry.convert import RESERVED, Rejections, check_features
from monitors.telemetry.inputs import decode_inputs
from monitors.telemetry.labels import LabelReader, LabelTable, cells_column


@dataclass(frozen=True)
class Layout:
    path: str = "modelDataCollector"
    inputs: str = "model_inputs"
    outputs: str = "model_outputs"
    rolling: str = "hour"  # hour | day: the collector's rolling_rate
    id_column: str | None = None

    def __post_init__(self) -> None:
        if self.rolling not in ("hour", "day"):
            raise ValidationFailed(f"rolling must be hour or day, got {self.rolling!r}", field="rolling")


class _Line(msgspec.Struct, gc=False):
    time: datetime  # RFC 3339, parsed by msgspec in C; a line without a valid time is a bad line
    data: list[msgspec.Raw]
    correlationid: str | None = None
    modelversion: str | None = None


_LINE = msgspec.json.Decoder(_Line)
_ROW = msgspec.json.Decoder(dict[str, Any])


@dataclass
class _Lines:
    """One collection's lines in a window, in collection order, grouped by correlation id. Rows stay the raw
    JSON bytes of the collector's file until they are parsed, column at a time, for the whole window."""

    by_id: dict[str, list[tuple[datetime, str | None, str, list[msgspec.Raw]]]]  # (time, version, deployment, rows)
    rejected: dict[str, int]


class DataCollectorTelemetrySource:
    """Conforms to core.ports.TelemetrySource over the data collector's files."""

    def __init__(self, files: Files, layout: Layout = Layout(), *, labels: LabelTable | None = None,
                 label_files: Files | None = None, features: Mapping[str, str] | None = None) -> None:
        self.files, self.layout = files, layout
        self.labels = LabelReader(label_files or files, labels) if labels is not None else None
        self.features = check_features(features)

    def fetch(self, endpoint: EndpointRef, window: Window) -> TelemetryBatch:
        deployments = [endpoint.deployment] if endpoint.deployment else self.files.folders(
            f"{self.layout.path}/{endpoint.name}/")
        inputs = _Lines({}, {})
        outputs = _Lines({}, {})
        # outputs are collected just after their inputs: look one rolling period past the window's end
        late = Window(window.start, window.end + (timedelta(hours=1) if self.layout.rolling == "hour"
                                                  else timedelta(days=1)))
        for deployment in deployments:
            self._collect(inputs, endpoint.name, deployment, self.layout.inputs, window, window)
            self._collect(outputs, endpoint.name, deployment, self.layout.outputs, late, None)
        return self._batch(endpoint, window, inputs, outputs)

    # --- reading ----------------------------------------------------------------------------------
    def _collect(self, into: _Lines, endpoint: str, deployment: str, collection: str, span: Window,
                 keep: Window | None) -> None:
        for name in self._names(endpoint, deployment, collection, span):
            for line in _lines(self.files.read(name), into.rejected):
                moment = line.time if line.time.tzinfo is not None else line.time.replace(tzinfo=UTC)
                if keep is not None and not keep.start <= moment < keep.end:
                    continue
                into.by_id.setdefault(line.correlationid or "", []).append(
                    (moment, line.modelversion, deployment, line.data))

    def _names(self, endpoint: str, deployment: str, collection: str, span: Window) -> list[str]:
        """The files of the rolling folders that overlap `span`, listed one day folder at a time."""
        base = f"{self.layout.path}/{endpoint}/{deployment}/{collection}/"
        names = []
        day = span.start.replace(hour=0, minute=0, second=0, microsecond=0)
        while day < span.end:
            for entry in self.files.files(f"{base}{day:%Y/%m/%d}/"):
                parts = entry.name[len(base):].split("/")
                if self.layout.rolling == "hour":
                    if len(parts) != 5 or not parts[3].isdigit():
                        continue
                    start = day.replace(hour=int(parts[3]))
                    if start + timedelta(hours=1) <= span.start or start >= span.end:
                        continue
                if entry.name.endswith(".jsonl"):
                    names.append(entry.name)
            day += timedelta(days=1)
        return sorted(names)

    # --- joining ----------------------------------------------------------------------------------
    def _batch(self, endpoint: EndpointRef, window: Window, inputs: _Lines, outputs: _Lines) -> TelemetryBatch:
        """Rows of one correlation id match by position across its inputs and outputs lines; the per-row work
        here is list bookkeeping only, the rows are parsed later for the whole window at once."""
        ids: list[str] = []
        times: list[datetime] = []
        deployments: list[str] = []
        versions: list[str | None] = []
        rows: list[msgspec.Raw] = []
        answers: list[msgspec.Raw | None] = []
        rejected = {**inputs.rejected, **{f"outputs_{k}": v for k, v in outputs.rejected.items()}}
        for cid, lines in inputs.by_id.items():
            answered = outputs.by_id.pop(cid, [])
            if len(lines) == 1 == len(answered) and len(lines[0][3]) == 1 == len(answered[0][3]):
                moment, version, deployment, data = lines[0]  # the usual: one request, one answer
                ids.append(cid)
                times.append(moment)
                versions.append(version)
                deployments.append(deployment)
                rows.append(data[0])
                answers.append(answered[0][3][0])
                continue
            mine = [raw for line in lines for raw in line[3]]
            theirs = [raw for line in answered for raw in line[3]]
            if len(theirs) != len(mine):
                rejected["outputs_unmatched"] = rejected.get("outputs_unmatched", 0) + abs(len(theirs) - len(mine))
            ids.extend([cid] if len(mine) == 1 else [f"{cid}/{i}" for i in range(len(mine))])
            for moment, version, deployment, data in lines:
                times.extend([moment] * len(data))
                versions.extend([version] * len(data))
                deployments.extend([deployment] * len(data))
            rows.extend(mine)
            answers.extend(theirs[:len(mine)] + [None] * (len(mine) - len(theirs)))
        # answers past the window's end belong to the next window's requests, not here
        orphans = sum(len(line[3]) for lines in outputs.by_id.values() for line in lines if line[0] < window.end)
        if orphans:
            rejected["outputs_without_inputs"] = rejected.get("outputs_without_inputs", 0) + orphans
        if self.layout.id_column:
            ids = self._custom_ids(ids, rows)
        return self._frame(endpoint, window, ids, times, deployments, versions, _texts(rows), answers, rejected)

    def _custom_ids(self, ids: list[str], rows: list[msgspec.Raw]) -> list[str]:
        """The team's own id column where a row carries it; the collector's otherwise."""
        marker = self.layout.id_column.encode()
        out = []
        for default, raw in zip(ids, rows, strict=True):
            value = (_object(raw) or {}).get(self.layout.id_column) if marker in bytes(raw) else None
            out.append(default if value is None else str(value))
        return out

    def _frame(self, endpoint: EndpointRef, window: Window, ids: list[str], times: list[datetime],
               deployments: list[str], versions: list[str | None], texts: pa.Array,
               predicted: list[msgspec.Raw | None], rejected: dict[str, int]) -> TelemetryBatch:
        rej = Rejections(ids)
        typed = self.features is not None
        # A generative deployment collects its prompt with the inputs and its response with the outputs: a spec's
        # generation-field features (prompt, response, tokens_out, ...) are taken from whichever holds them.
        plain, own = generation.split_features(self.features, typed)
        columns = decode_inputs(texts, plain, rej.reject) if typed else _untyped(texts, rej)
        if own:
            found = _untyped(texts, rej)
            columns.update({name: found[name] for name in own if name in found})
        outputs = _output_columns(predicted, set(columns))
        frame = pd.DataFrame({"request_id": np.array(ids, dtype=object),
                              "time": pd.DatetimeIndex(times, tz="UTC") if times else pd.DatetimeIndex([], tz="UTC"),
                              "deployment": np.array(deployments, dtype=object),
                              "model_version": np.array(versions, dtype=object), **columns, **outputs,
                              "label": self.labels.lookup(ids) if self.labels else np.full(len(ids), np.nan)})
        if rej.bad.any():
            frame = frame.loc[~rej.bad].reset_index(drop=True)
        for reason, count in rej.counts.items():
            rejected[reason] = rejected.get(reason, 0) + count
        return TelemetryBatch(endpoint=endpoint, window=window, frame=frame, rejected=rejected,
                              rejected_examples=tuple(rej.examples))

def _lines(body: bytes, rejected: dict[str, int]) -> Iterator[_Line]:
    """Each JSON line of a file; a line that is not a collector event with row data is counted, not raised."""
    try:
        yield from _LINE.decode_lines(body)
        return
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    for text in body.splitlines():
        if not text.strip():
            continue
        try:
            yield _LINE.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError):
            rejected["bad_collector_line"] = rejected.get("bad_collector_line", 0) + 1


def _object(raw: bytes) -> dict[str, Any] | None:
    try:
        return _ROW.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _untyped(texts: pa.Array, rej: Rejections) -> dict[str, Any]:
    docs = []
    for i, text in enumerate(texts.to_pylist()):
        try:
            doc = _ROW.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            rej.reject(i, "wrong_type", f"row is not a JSON object: {exc}", text)
            doc = {}
        docs.append(doc)
    frame = pd.DataFrame.from_records(docs, index=range(len(docs))) if docs else pd.DataFrame()
    return {str(c): frame[c].to_numpy() for c in frame.columns if c not in RESERVED}


def _texts(rows: list[msgspec.Raw]) -> pa.Array:
    """The rows' JSON text as one Arrow string array, built from their bytes without a Python string per row."""
    lengths = np.fromiter((len(raw) for raw in rows), dtype=np.int32, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.StringArray.from_buffers(len(rows), pa.py_buffer(offsets), pa.py_buffer(b"".join(rows)))


def _output_columns(predicted: list[msgspec.Raw | None], taken: set[str]) -> dict[str, Any]:
    """Every column of the logged outputs as its own column; `prediction` and `score` fill the reserved ones.

    Arrow's JSON reader parses them all at once; outputs whose types disagree between rows (or that are not
    objects) take the row-by-row way."""
    out: dict[str, Any] = {}
    body = b"\n".join(b"{}" if raw is None else raw for raw in predicted)
    try:
        table = pj.read_json(pa.BufferReader(body), read_options=pj.ReadOptions(block_size=max(1 << 20, len(body))),
                             parse_options=pj.ParseOptions(newlines_in_values=False)) if predicted else None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        table = None
    if table is not None and table.num_rows == len(predicted) and all(
            pa.types.is_integer(c.type) or pa.types.is_floating(c.type) or pa.types.is_string(c.type)
            or pa.types.is_boolean(c.type) or pa.types.is_null(c.type) for c in table.columns):
        for name in table.column_names:
            if name not in taken and name not in ("label", "request_id", "time"):
                column = table[name]
                numeric = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                out[name] = column.to_numpy(zero_copy_only=False).astype(np.float64) if numeric else \
                    cells_column(column.to_pylist())
    else:
        rows = [(_object(raw) or {}) if raw is not None else {} for raw in predicted]
        names = sorted({k for row in rows for k in row if k not in taken and k not in ("label", "request_id", "time")})
        out = {name: cells_column([row.get(name) for row in rows]) for name in names}
    for reserved in ("prediction", "score"):
        out.setdefault(reserved, np.full(len(predicted), np.nan))
    return out
