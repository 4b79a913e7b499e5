"""The endpoints' traffic during a chaos run, written into the local telemetry store as the local endpoint would:
requests follow the endpoint's current traffic split (endpoints.json), with their labels, in simulated time.

The retrained endpoint drifts in episodes (its x1 moves and comes back), so drift opens incidents and starts
retrains; canaries of even model versions fail a share of their requests (HTTP 500), so some are rolled back
and the others promoted.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from chaos.world import CHECKED, RETRAINED, START, labelled
from core.clock import FileClock

ROWS_PER_MINUTE = 1.5
DRIFT_EPISODE = timedelta(hours=2)  # drifted for one episode, back for the next, and so on


class TrafficWriter:
    """A thread writing each endpoint's requests up to the simulated now, every `interval_s` wall seconds."""

    def __init__(self, data_dir: Path, clock_file: Path, seed: int, interval_s: float = 0.2) -> None:
        from core.telemetry_store import SqliteTelemetryStore

        self.store = SqliteTelemetryStore(data_dir / "telemetry.sqlite")
        self.endpoints_file = data_dir / "endpoints.json"
        self.clock = FileClock(str(clock_file))
        self.rng = np.random.default_rng(seed + 1)
        self.interval_s = interval_s
        self.written_until = START
        self.rows = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.write_until(self.clock.now())

    def write_until(self, now: datetime) -> None:
        from core.telemetry import LabelRecord, RequestRecord

        minutes = (now - self.written_until).total_seconds() / 60
        count = int(self.rng.poisson(ROWS_PER_MINUTE * minutes)) if minutes > 0 else 0
        if count == 0:
            return
        records, labels = [], []
        for endpoint in (RETRAINED, CHECKED):
            drifted = endpoint == RETRAINED and int((now - START) / DRIFT_EPISODE) % 2 == 1
            rows = labelled(self.rng, count, shift=2.5 if drifted else 0.0)
            split = self._split(endpoint)
            for i, row in enumerate(rows.to_dict("records")):
                at = self.written_until + (now - self.written_until) * (i + 1) / (count + 1)
                deployment, model = split[int(self.rng.choice(len(split), p=[w for _, _, w in split]))][:2]
                failing = _even(model) and deployment != split[0][0] and self.rng.random() < 0.4
                request_id = f"{endpoint}-{at.timestamp():.6f}-{i}"
                records.append(RequestRecord(
                    time=at, request_id=request_id, endpoint=endpoint, deployment=deployment, model_version=model,
                    inputs={k: row[k] for k in ("x1", "x2", "c1")}, prediction=int(row["score"] > 0.5),
                    score=float(row["score"]), latency_ms=5.0, status_code=500 if failing else 200))
                labels.append(LabelRecord(request_id, int(row["label"]), at))
        self.store.write(records)
        self.store.write_labels(labels)
        self.written_until = now
        self.rows += len(records)

    def _split(self, endpoint: str) -> list[tuple[str, str, float]]:
        """[(deployment, model version, share)], the champion (largest share) first."""
        try:
            state = json.loads(self.endpoints_file.read_text())
        except (OSError, ValueError):
            state = {}
        ep = (state.get("endpoints") or {}).get(endpoint) or {}
        traffic = {name: share for name, share in (ep.get("traffic") or {}).items() if share > 0}
        if not traffic:
            return [("blue", "none", 1.0)]
        models = {name: _model(spec) for name, spec in (ep.get("deployments") or {}).items()}
        ranked = sorted(traffic.items(), key=lambda kv: -kv[1])
        return [(name, models.get(name, "none"), share / 100) for name, share in ranked]


def _model(spec: object) -> str:
    return str(spec.get("model") if isinstance(spec, dict) else spec)


def _even(model: str) -> bool:
    version = model.rpartition(":")[2]
    return version.isdigit() and int(version) % 2 == 0
