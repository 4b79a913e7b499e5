"""Model registries: a folder of MLflow models with lineage (local) and Azure ML's model registry.

Every version is an MLflow model (a folder with an `MLmodel` file), which Azure ML deploys without a
scoring script or environment, and which the gate, the backtest and the endpoint load with
`mlflow.pyfunc`. Loading a model runs code (its flavour's loader, deserialized objects, a pyfunc
model's Python): only models from the team's own registry are loaded, never one from elsewhere.

Local layout: <root>/<name>/<version>/model/ (the MLflow model) and <root>/<name>/<version>/meta.json
{name, version, created, run_id, metrics, lineage: {run_id, training_window, parent, task, features,
target, time_column, classes, reference, train, ...}}.
"""
from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from core.azure_errors import translated
from core.errors import NotFound, ValidationFailed
from core.files import write_json
from core.types import ModelVersion, iso

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
MLMODEL_FILE = "MLmodel"


class LocalModelRegistry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def register(self, name: str, model_dir: str | Path, *, metrics: Mapping[str, float],
                 lineage: Mapping[str, Any], created: datetime | None = None) -> ModelVersion:
        """Add a version; registering the same run again returns the version it already made."""
        if not _NAME.match(name):
            raise ValidationFailed(f"model name {name!r} is not a valid name", field="name")
        if not (Path(model_dir) / MLMODEL_FILE).exists():
            raise ValidationFailed(f"{model_dir} is not an MLflow model (no {MLMODEL_FILE} file)", field="model")
        run_id = lineage.get("run_id")
        if run_id:
            for meta in self._metas(name):
                if meta.get("run_id") == run_id:
                    return ModelVersion(name, meta["version"])
        while True:
            version = str(self._next_version(name))
            target = self.root / name / version
            try:
                target.mkdir(parents=True)  # atomic claim of the version number
                break
            except FileExistsError:
                continue
        shutil.copytree(model_dir, target / "model")
        meta = {"name": name, "version": version, "run_id": run_id,
                "created": iso(created or datetime.now(timezone.utc)), "metrics": dict(metrics),
                "lineage": dict(lineage)}
        write_json(target / "meta.json", meta)  # atomic: a version is visible only once complete
        return ModelVersion(name, version)

    def get(self, name: str, version: str) -> dict[str, Any]:
        path = self.root / name / str(version) / "meta.json"
        if not path.exists():
            raise NotFound(f"no model {name}:{version} in the local registry")
        return {**json.loads(path.read_text()), "path": str(path.parent / "model")}

    def latest(self, name: str) -> ModelVersion | None:
        metas = self._metas(name)
        return ModelVersion(name, metas[-1]["version"]) if metas else None

    def versions(self, name: str) -> list[ModelVersion]:
        return [ModelVersion(name, m["version"]) for m in self._metas(name)]

    def model_path(self, version: ModelVersion) -> Path:
        return Path(self.get(version.name, version.version)["path"])

    def load_model(self, version: ModelVersion) -> Any:
        """The version as an `mlflow.pyfunc` model (this runs the model's code: see the module docstring)."""
        from retrain.components._models import load

        return load(self.model_path(version))

    def _metas(self, name: str) -> list[dict[str, Any]]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        metas = [json.loads(p.read_text()) for p in folder.glob("*/meta.json")]
        return sorted(metas, key=lambda m: int(m["version"]))

    def _next_version(self, name: str) -> int:
        folder = self.root / name
        taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
        return max(taken, default=0) + 1


class AzureMLModelRegistry:
    """Azure ML's registry through `ml_client.models`; lineage travels in the model's tags and properties."""

    def __init__(self, ml_client: Any) -> None:
        self.ml_client = ml_client

    @translated("Azure ML")
    def register(self, name: str, path: str, *, metrics: Mapping[str, float], lineage: Mapping[str, Any],
                 description: str = "") -> ModelVersion:
        from azure.ai.ml.entities import Model

        run_id = str(lineage.get("run_id") or "")
        if run_id:
            for model in self.ml_client.models.list(name=name):
                if (model.tags or {}).get("run_id") == run_id:
                    return ModelVersion(name, str(model.version))
        model = Model(name=name, path=path, type="mlflow_model", description=description,
                      tags={"run_id": run_id, "parent": str(lineage.get("parent") or ""),
                            "task": str(lineage.get("task") or "")},
                      properties={"lineage": json.dumps(dict(lineage), sort_keys=True),
                                  "metrics": json.dumps(dict(metrics), sort_keys=True)})
        created = self.ml_client.models.create_or_update(model)
        return ModelVersion(name, str(created.version))

    @translated("Azure ML")
    def get(self, name: str, version: str) -> dict[str, Any]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            model = self.ml_client.models.get(name=name, version=version)
        except ResourceNotFoundError as exc:
            raise NotFound(f"no model {name}:{version} in the Azure ML registry") from exc
        props = model.properties or {}
        return {"name": name, "version": str(model.version), "path": f"azureml:{name}:{model.version}",
                "run_id": (model.tags or {}).get("run_id"), "lineage": json.loads(props.get("lineage", "{}")),
                "metrics": json.loads(props.get("metrics", "{}"))}

    @translated("Azure ML")
    def latest(self, name: str) -> ModelVersion | None:
        versions = [str(m.version) for m in self.ml_client.models.list(name=name)]
        if not versions:
            return None
        return ModelVersion(name, max(versions, key=lambda v: (len(v), v)))

    @translated("Azure ML")
    def model_path(self, version: ModelVersion) -> str:
        return f"azureml:{version.name}:{version.version}"
