"""Reading Azure ML data collector files from Blob Storage (Azurite): our source vs the pandas way, same files.

    python -m benchmarks.datacollector --rows 200000

A day of traffic is written in the collector's layout (24 hour folders, `--instances` files each, model_inputs and
model_outputs lines of `--batch` rows, 12 features). `ours_*` is DataCollectorTelemetrySource.fetch of that day
(typed feature columns, outputs joined on correlationid, a TelemetryBatch), cold (new client, first fetch) and warm.
`pandas_s` is what one writes without it: list and download the same blobs with the same SDK, `pd.read_json(lines=
True)`, explode `data`, `json_normalize` the rows and merge inputs with outputs on correlationid and row position.
Both include the downloads from Azurite on loopback. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import io
import json
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

DAY = datetime(2013, 4, 1, tzinfo=timezone.utc)


def write_day(container, rows: int, batch: int, instances: int, seed: int = 0) -> int:
    from tests.collector_files import Writer, blob_name, line
    from tests.e2e.world import flights

    rng = np.random.default_rng(seed)
    writer = Writer()
    per_hour = rows // 24
    for hour in range(24):
        at = DAY + timedelta(hours=hour)
        frame = flights(rng, per_hour)
        scores = pd.DataFrame({"score": rng.random(per_hour)})
        scores["prediction"] = (scores["score"] > 0.5).astype(int)
        for start in range(0, per_hour, batch):
            cid = f"{hour:02d}-{start:07d}"
            moment = at + timedelta(seconds=3600 * start // per_hour)
            instance = f"instance-{start // batch % instances}"
            writer.add(blob_name("model_inputs", at, instance=instance),
                       [line("model_inputs", frame.iloc[start:start + batch], cid, moment)])
            writer.add(blob_name("model_outputs", at, instance=instance),
                       [line("model_outputs", scores.iloc[start:start + batch], cid, moment)])
    writer.to_container(container)
    return len(writer.files)


def pandas_way(container, prefix: str) -> pd.DataFrame:
    def collection(name: str) -> pd.DataFrame:
        parts = []
        for blob in container.list_blobs(name_starts_with=f"{prefix}/{name}/"):
            body = container.download_blob(blob.name).readall()
            parts.append(pd.read_json(io.BytesIO(body), lines=True, dtype=False))
        lines = pd.concat(parts, ignore_index=True)[["correlationid", "time", "data"]].explode("data")
        lines["position"] = lines.groupby("correlationid").cumcount()
        rows = pd.json_normalize(lines["data"].tolist())
        return pd.concat([lines.drop(columns="data").reset_index(drop=True), rows], axis=1)

    return collection("model_inputs").merge(collection("model_outputs").drop(columns="time"),
                                            on=["correlationid", "position"], how="left")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10, help="rows per collector line")
    parser.add_argument("--instances", type=int, default=2, help="files per hour folder")
    args = parser.parse_args()

    from azure.storage.blob import ContainerClient

    from core.types import EndpointRef, Window
    from monitors.telemetry.blobfiles import BlobFiles
    from monitors.telemetry.datacollector import DataCollectorTelemetrySource
    from tests.azurite import running_azurite, unique_name
    from tests.contract.test_datacollector import KINDS

    with running_azurite() as az:
        name = unique_name("bench")
        container = ContainerClient(az.blob_endpoint, name, credential=az.credential)
        container.create_container()
        files = write_day(container, args.rows, args.batch, args.instances)
        window = Window(DAY, DAY + timedelta(days=1))

        started = time.perf_counter()
        source = DataCollectorTelemetrySource(BlobFiles(az.blob_endpoint, name, credential=az.credential),
                                              features=KINDS)
        batch = source.fetch(EndpointRef("flights", "blue"), window)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        again = source.fetch(EndpointRef("flights", "blue"), window)
        warm = time.perf_counter() - started

        started = time.perf_counter()
        frame = pandas_way(container, "modelDataCollector/flights/blue")
        reference = time.perf_counter() - started
        assert batch.rows == again.rows == len(frame), (batch.rows, len(frame))
    print(json.dumps({"benchmark": "datacollector", "rows": batch.rows, "files": files, "batch": args.batch,
                      "ours_cold_s": round(cold, 3), "ours_warm_s": round(warm, 3), "pandas_s": round(reference, 3),
                      "rows_per_s_warm": round(batch.rows / warm), "speedup_vs_pandas": round(reference / warm, 2)}))


if __name__ == "__main__":
    main()
