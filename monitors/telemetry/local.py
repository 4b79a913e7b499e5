"""LocalTelemetrySource: reads one endpoint's window from the local store the local endpoint writes."""
from __future__ import annotations

from typing import Mapping

from core.telemetry_store import SqliteTelemetryStore
from core.types import EndpointRef, TelemetryBatch, Window
from monitors.telemetry.convert import build_batch, check_features


class LocalTelemetrySource:
    """Conforms to core.ports.TelemetrySource. A locked or unreadable store raises TelemetryUnavailable.

    `features` (name -> "numeric" | "categorical") is what the inputs must hold; rows that do not fit are
    counted in `batch.rejected`. Without it, every key found in the inputs becomes a column.
    """

    def __init__(self, store: SqliteTelemetryStore, features: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.features = check_features(features)

    def fetch(self, endpoint: EndpointRef, window: Window) -> TelemetryBatch:
        table = self.store.read_window(endpoint.name, window.start, window.end, endpoint.deployment)
        raw = {name: table[name] for name in table.column_names}
        raw["time"] = raw.pop("time_us")
        return build_batch(endpoint, window, raw, self.features)
