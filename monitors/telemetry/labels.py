"""Ground truth from a table the team names: Parquet or CSV files (one, or a folder of them) holding an id column and
a label column, joined to telemetry on the request id. Each file is parsed again only when it changed."""
from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from core.errors import ConfigurationError
from monitors.telemetry.blobfiles import Files


@dataclass(frozen=True)
class LabelTable:
    path: str  # a .parquet/.csv file, or a folder of them
    id_column: str = "correlationid"
    label_column: str = "label"


class LabelReader:
    """Labels of `table` read from `files`: id -> label, the last file listed winning for an id seen twice."""

    def __init__(self, files: Files, table: LabelTable) -> None:
        self.files, self.table = files, table
        self._cache: dict[str, tuple[str, pd.DataFrame]] = {}
        self._lock = threading.Lock()

    def lookup(self, ids: Sequence[str]) -> np.ndarray:
        if not ids:
            return np.full(0, np.nan)
        found = pd.Series(ids).map(self._by_id())
        return cells_column([None if pd.isna(v) else v for v in found.tolist()])

    def _by_id(self) -> pd.Series:
        parts = []
        for entry in self.files.files(self.table.path):
            suffix = entry.name.rsplit(".", 1)[-1].lower()
            if suffix not in ("parquet", "csv"):
                continue
            with self._lock:
                cached = self._cache.get(entry.name)
            if cached is None or cached[0] != entry.tag:
                cached = (entry.tag, self._read(entry.name, suffix))
                with self._lock:
                    self._cache[entry.name] = cached
            parts.append(cached[1])
        if not parts:
            return pd.Series(dtype=object)
        table = pd.concat(parts, ignore_index=True).drop_duplicates(subset="id", keep="last")
        return pd.Series(table["label"].to_numpy(), index=table["id"].astype(str).to_numpy())

    def _read(self, name: str, suffix: str) -> pd.DataFrame:
        body = io.BytesIO(self.files.read(name))
        id_column, label_column = self.table.id_column, self.table.label_column
        frame = pd.read_parquet(body) if suffix == "parquet" else pd.read_csv(body, dtype={id_column: str})
        missing = [c for c in (id_column, label_column) if c not in frame.columns]
        if missing:
            raise ConfigurationError(f"label file {name} has no column {', '.join(missing)} "
                                     f"(has {', '.join(map(str, frame.columns))})")
        return pd.DataFrame({"id": frame[id_column].astype(str), "label": frame[label_column]})


def cells_column(values: list[Any]) -> np.ndarray:
    """Decoded cells -> float64 with NaN when all are numbers (or missing), else objects."""
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    out[:] = [np.nan if v is None else v for v in values]
    return out
