"""Azure ML data collector files, written the way the collector lays them out (Azure ML docs, "Collect production
data from models deployed for real-time inferencing"): one JSON object per line, `data` = the logged DataFrame as
`to_json(orient="records")` (what azureml-ai-monitoring's Collector sends), under
`{path}/{endpoint}/{deployment}/{collection}/{yyyy}/{MM}/{dd}/{HH}/{instance_id}.jsonl`.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

SOURCE = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
          "Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/{endpoint}/deployments/{deployment}")


def line(collection: str, frame: pd.DataFrame, correlation_id: str, at: datetime, *, endpoint: str = "flights",
         deployment: str = "blue", model_version: str = "1") -> str:
    data = frame.to_json(orient="records")
    event = {"specversion": "1.0", "id": str(uuid.uuid4()),
             "source": SOURCE.format(endpoint=endpoint, deployment=deployment),
             "type": f"azureml.inference.{collection}", "datacontenttype": "application/json",
             "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "data": json.loads(data), "correlationid": correlation_id,
             "xrequestid": correlation_id, "modelversion": model_version,
             "collectdatatype": "pandas.core.frame.DataFrame", "agent": "azureml-ai-monitoring/1.0.0",
             "contentrange": f"bytes 0-{len(data) - 1}/{len(data)}"}
    return json.dumps(event, separators=(",", ":"))


def blob_name(collection: str, at: datetime, *, endpoint: str = "flights", deployment: str = "blue",
              path: str = "modelDataCollector", instance: str = "instance-0") -> str:
    return f"{path}/{endpoint}/{deployment}/{collection}/{at:%Y/%m/%d/%H}/{instance}.jsonl"


class Writer:
    """Collects files in memory, then writes them to a Blob container and/or a local folder."""

    def __init__(self) -> None:
        self.files: dict[str, bytearray] = {}

    def add(self, name: str, lines: Iterable[str]) -> None:
        body = self.files.setdefault(name, bytearray())
        for text in lines:
            body += text.encode() + b"\n"

    def put(self, name: str, content: bytes) -> None:
        self.files[name] = bytearray(content)

    def to_container(self, container: Any) -> None:
        for name, body in self.files.items():
            container.upload_blob(name, bytes(body), overwrite=True)

    def to_folder(self, root: Path) -> None:
        for name, body in self.files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bytes(body))
