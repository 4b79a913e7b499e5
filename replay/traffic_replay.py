"""Replays traffic through the local endpoint over real HTTP, block by block, on the simulated clock.

Between hours devhost runs the function app's timers and queues on the same clock, so checks,
alerts, retrains, gates and canaries happen through the product's own code paths. Pipeline runs are
real subprocesses: the replay waits for a running one, so simulated time does not outrun them.
"""
from __future__ import annotations

import http.client
import json
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable
from urllib.parse import urlsplit

import pandas as pd

from core.records import RUN
from core.telemetry import LabelRecord
from core.types import RunRef
from replay.workspace import LABEL, Traffic


@dataclass
class ReplayStats:
    requests: int = 0
    rows: int = 0
    errors: int = 0
    labels: int = 0
    waited_runs: int = 0
    per_day: list[dict[str, Any]] = field(default_factory=list)


class Replay:
    def __init__(self, traffic: Traffic, endpoint_url: str, host: Any, clock: Any, box: Any, *,
                 label_lag: timedelta, batch: int = 500, block_hours: int = 6,
                 on_block: Callable[[], None] | None = None) -> None:
        self.traffic, self.host, self.clock, self.box = traffic, host, clock, box
        self.label_lag, self.batch, self.on_block = label_lag, batch, on_block or (lambda: None)
        self.block_hours = block_hours
        parts = urlsplit(endpoint_url)
        # generous: the first request loads the model (mlflow, skops), which on a loaded 2-core machine takes a while
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        self.stats = ReplayStats()
        self._labelled_until = None

    def day(self, start: pd.Timestamp) -> None:
        """A day in blocks of `block` hours: each block's flights are scored in batches at its start."""
        for hour in range(0, 24, self.block_hours):
            moment = start + pd.Timedelta(hours=hour)
            self.host.advance_to(moment.to_pydatetime())
            self.settle()
            rows = self.traffic.between(moment, moment + pd.Timedelta(hours=self.block_hours))
            for lo in range(0, len(rows), self.batch):
                self.post(rows.iloc[lo:lo + self.batch])
            self.on_block()
        self.deliver_labels(start + pd.Timedelta(days=1))

    def post(self, rows: pd.DataFrame) -> None:
        columns = list(self.traffic.features)
        data = [[None if isinstance(v, float) and math.isnan(v) else _plain(v) for v in row]
                for row in rows[columns].itertuples(index=False, name=None)]
        body = json.dumps({"input_data": {"columns": columns, "data": data},
                           "request_ids": rows["request_id"].tolist()}).encode()
        self.conn.request("POST", "/score", body=body, headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        payload = response.read()
        self.stats.requests += 1
        self.stats.rows += len(rows)
        codes = json.loads(payload).get("status_codes") if response.status in (200, 500) else None
        if codes is None:
            raise RuntimeError(f"endpoint answered {response.status}: {payload[:300]!r}")
        self.stats.errors += sum(1 for code in codes if code >= 400)

    def deliver_labels(self, now: pd.Timestamp) -> None:
        """Ground truth for flights that landed at least `label_lag` ago arrives, keyed by request id."""
        until = now - pd.Timedelta(self.label_lag)
        since = self._labelled_until or until - pd.Timedelta(days=3650)
        rows = self.traffic.between(since, until)
        self._labelled_until = until
        if rows.empty:
            return
        at = self.clock.now()
        self.box.telemetry_store.write_labels(
            [LabelRecord(request_id=r, label=_plain(y), time=at) for r, y in zip(rows["request_id"], rows[LABEL],
                                                                                strict=True)])
        self.stats.labels += len(rows)

    def settle(self) -> None:
        """Let running pipeline runs finish in (almost) no simulated time, then let the app react."""
        runner = self.box.retrain_deps.runner
        waited = False
        for _, doc in self.box.store.list(RUN):
            run = doc.data.get("run")
            if doc.data.get("state") == "running" and run:
                runner.wait(RunRef(run["run_id"], run["backend"], run.get("external_id")), timeout=600)
                waited = True
        if waited:
            self.stats.waited_runs += 1
            self.host.run_until_idle()

    def close(self) -> None:
        self.conn.close()


def _plain(value: Any) -> Any:
    """numpy scalars as the JSON values labels are stored as."""
    return value.item() if hasattr(value, "item") else value
