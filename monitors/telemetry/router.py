"""One TelemetrySource for the app that reads each endpoint's telemetry where its monitor spec says it lies.

Monitors whose spec leaves `telemetry` at its default use the app's source (the local store, or Log Analytics);
a spec with `telemetry: {kind: azureml_data_collector, ...}` is read from Azure ML's data collector files.
Sources are built on first use and kept while the spec's telemetry section and features stay the same.
"""
from __future__ import annotations

import threading
from typing import Any

from core.errors import ConfigurationError
from core.ports import TelemetrySource
from core.types import EndpointRef, TelemetryBatch, Window
from monitors.spec import DataCollectorSource, MonitorSpec, SpecRepository


class SpecTelemetrySource:
    """Conforms to core.ports.TelemetrySource. `blob_credential` None: the app's identity."""

    def __init__(self, specs: SpecRepository, default: TelemetrySource, *, blob_credential: Any = None) -> None:
        self.specs, self.default, self.blob_credential = specs, default, blob_credential
        self._built: dict[str, TelemetrySource] = {}
        self._lock = threading.Lock()

    def fetch(self, endpoint: EndpointRef, window: Window) -> TelemetryBatch:
        return self.source_for(endpoint).fetch(endpoint, window)

    def source_for(self, endpoint: EndpointRef) -> TelemetrySource:
        """The source that holds this endpoint's telemetry (what it can do beyond fetch: monitors.big_windows)."""
        spec = self._spec_for(endpoint)
        return self.default if spec is None else self._source(spec)

    def _spec_for(self, endpoint: EndpointRef) -> MonitorSpec | None:
        """The monitor spec that names a non-default source for this endpoint (None: the app's source)."""
        chosen = [s for s in self.specs.all() if s.endpoint.name == endpoint.name and s.telemetry.kind != "default"
                  and s.endpoint.deployment in (None, endpoint.deployment)]
        distinct = {s.telemetry.model_dump_json() for s in chosen}
        if len(distinct) > 1:
            names = ", ".join(s.name for s in chosen)
            raise ConfigurationError(f"monitors {names} read endpoint {endpoint.name} from different telemetry "
                                     "sources: one endpoint's traffic lies in one place")
        return chosen[0] if chosen else None

    def _source(self, spec: MonitorSpec) -> TelemetrySource:
        key = spec.telemetry.model_dump_json() + repr(sorted(spec.kinds.items())) + str(spec.base_dir)
        with self._lock:
            found = self._built.get(key)
            if found is None:
                found = self._built[key] = data_collector_source(spec, self.blob_credential)
            return found


def data_collector_source(spec: MonitorSpec, credential: Any = None) -> TelemetrySource:
    from monitors.telemetry.blobfiles import BlobFiles, FolderFiles
    from monitors.telemetry.datacollector import DataCollectorTelemetrySource, Layout
    from monitors.telemetry.labels import LabelTable

    config = spec.telemetry
    assert isinstance(config, DataCollectorSource)
    if config.folder is not None:
        files: Any = FolderFiles(spec.base_dir / config.folder)
    else:
        files = BlobFiles(str(config.account_url), str(config.container), credential=credential)
    labels = None
    if config.labels is not None:
        labels = LabelTable(config.labels.path, config.labels.id_column, config.labels.label_column)
    layout = Layout(config.path, config.inputs, config.outputs, config.rolling, config.id_column)
    return DataCollectorTelemetrySource(files, layout, labels=labels, features=spec.kinds)
