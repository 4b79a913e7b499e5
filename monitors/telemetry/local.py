"""LocalTelemetrySource: reads one endpoint's window from the local store the local endpoint writes."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from core.telemetry_store import SqliteTelemetryStore
from core.types import EndpointRef, TelemetryBatch, Window
from monitors.telemetry.convert import build_batch, check_features, json_column, owned
from monitors.telemetry.typed import typed_inputs


class LocalTelemetrySource:
    """Conforms to core.ports.TelemetrySource. A locked or unreadable store raises TelemetryUnavailable.

    `features` (name -> "numeric" | "categorical") is what the inputs must hold; rows that do not fit are
    counted in `batch.rejected`. Without it, every key found in the inputs becomes a column.
    """

    def __init__(self, store: SqliteTelemetryStore, features: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.features = check_features(features)

    def fetch(self, endpoint: EndpointRef, window: Window) -> TelemetryBatch:
        return self._batch(endpoint, window, self.store.read_window(endpoint.name, window.start, window.end,
                                                                    endpoint.deployment))

    def count(self, endpoint: EndpointRef, window: Window) -> int:
        return self.store.count_window(endpoint.name, window.start, window.end, endpoint.deployment)

    def sample(self, endpoint: EndpointRef, window: Window, fraction: float, seed: int = 0) -> TelemetryBatch:
        """A uniform sample of the window (each request kept with probability `fraction`, seeded), as a fetch
        would give it; memory holds the sample, not the window."""
        return self._batch(endpoint, window, self.store.read_window(
            endpoint.name, window.start, window.end, endpoint.deployment, fraction=fraction, seed=seed))

    def _batch(self, endpoint: EndpointRef, window: Window, table: pa.Table) -> TelemetryBatch:
        raw = {name: table[name] for name in ("request_id", "deployment", "model_version", "latency_ms",
                                              "status_code", "score", "label", "generation")}
        raw["time"] = table["time_us"]
        raw["prediction"] = prediction(table)
        return build_batch(endpoint, window, raw, self.features,
                           inputs=lambda rej, features: typed_inputs(table, features, rej.reject))


    def summarize(self, endpoint: EndpointRef, window: Window, spec: Any, batch_rows: int = 1 << 20) -> Any:
        """The window's summary (monitors.drift.summary), streamed: one chunk of rows in memory at a time.
        Rows that do not fit the features are counted as rejected, as a fetch would."""
        from monitors.drift.summary import add_frame
        from monitors.telemetry.convert import ArrowIds, Rejections

        features = {**{n: "numeric" for n in spec.grids}, **{n: "categorical" for n in spec.categorical}}
        summary = spec.empty()
        for table in self.store.iter_window(endpoint.name, window.start, window.end, endpoint.deployment,
                                            batch_rows):
            rej = Rejections(ArrowIds(table["request_id"]))
            frame = pd.DataFrame(typed_inputs(table, features, rej.reject), copy=False)
            if rej.bad.any():
                frame = frame.loc[~rej.bad]
            add_frame(spec, summary, frame)
            for reason, count in rej.counts.items():
                summary.rejected[reason] = summary.rejected.get(reason, 0) + count
        return summary


def prediction(table: pa.Table) -> Any:
    """Numbers as float64; anything else (class names, probability lists) as decoded JSON objects."""
    numbers = owned(table["prediction"].to_numpy(zero_copy_only=False), np.float64)
    texts = table["prediction_json"]
    if texts.null_count == len(texts):
        return numbers
    decoded = json_column(texts.to_pylist())
    given = texts.is_valid().to_numpy(zero_copy_only=False)
    if decoded.dtype == np.float64:
        return np.where(given, decoded, numbers)
    out = numbers.astype(object)
    out[given] = decoded[given]
    return out
