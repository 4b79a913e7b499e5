"""Model registries: versions, lineage, idempotent registration; Azure through fake `ml_client.models` ops."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from core.errors import NotFound, ValidationFailed
from core.types import ModelVersion
from retrain.registry import AzureMLModelRegistry, LocalModelRegistry


def model_dir(tmp_path, name="m"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n")
    return folder


def test_local_versions_count_up_keep_lineage_and_a_rerun_finds_its_version(tmp_path):
    registry = LocalModelRegistry(tmp_path / "registry")
    assert registry.latest("flights") is None
    when = datetime(2013, 4, 1, tzinfo=timezone.utc)
    lineage = {"run_id": "r1", "parent": None, "training_window": {"start": "2013-01-01", "end": "2013-03-31"}}
    v1 = registry.register("flights", model_dir(tmp_path), metrics={"challenger/auc": 0.7}, lineage=lineage,
                           created=when)
    assert v1 == ModelVersion("flights", "1")
    assert registry.register("flights", model_dir(tmp_path, "again"), metrics={}, lineage=lineage) == v1
    v2 = registry.register("flights", model_dir(tmp_path, "m2"), metrics={}, lineage={"run_id": "r2",
                                                                                     "parent": str(v1)})
    assert v2 == ModelVersion("flights", "2") and registry.latest("flights") == v2
    meta = registry.get("flights", "1")
    assert meta["created"] == "2013-04-01T00:00:00Z" and meta["metrics"] == {"challenger/auc": 0.7}
    assert meta["lineage"]["training_window"]["end"] == "2013-03-31" and meta["run_id"] == "r1"
    assert registry.get("flights", "2")["lineage"]["parent"] == "flights:1"
    assert (registry.model_path(v2) / "MLmodel").exists()
    assert registry.versions("flights") == [v1, v2]
    with pytest.raises(NotFound):
        registry.get("flights", "9")
    with pytest.raises(ValidationFailed):
        registry.register("../escape", model_dir(tmp_path, "m3"), metrics={}, lineage={})


def test_a_folder_that_is_not_an_mlflow_model_is_refused(tmp_path):
    folder = tmp_path / "pickle"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(b"a pickle")
    with pytest.raises(ValidationFailed, match="not an MLflow model"):
        LocalModelRegistry(tmp_path / "registry").register("flights", folder, metrics={}, lineage={"run_id": "r"})
    assert LocalModelRegistry(tmp_path / "registry").latest("flights") is None


class FakeModels:
    def __init__(self):
        self.stored = []

    def list(self, name):
        return [m for m in self.stored if m.name == name]

    def create_or_update(self, model):
        model.version = str(len(self.list(model.name)) + 1)
        self.stored.append(model)
        return model

    def get(self, name, version):
        from azure.core.exceptions import ResourceNotFoundError

        for m in self.list(name):
            if m.version == version:
                return m
        raise ResourceNotFoundError(f"{name}:{version}")


def test_azureml_registry_registers_a_real_model_entity_once_per_run():
    from azure.ai.ml.entities import Model

    client = type("Client", (), {"models": FakeModels()})()
    registry = AzureMLModelRegistry(client)
    path = "azureml://jobs/j1/outputs/registered/paths/model/"
    lineage = {"run_id": "j1", "task": "binary"}
    v1 = registry.register("flights", path, metrics={"challenger/auc": 0.7}, lineage=lineage)
    assert registry.register("flights", path, metrics={}, lineage=lineage) == v1
    (model,) = client.models.stored
    # mlflow_model: Azure ML deploys it without a scoring script or environment
    assert isinstance(model, Model) and model.path == path and model.type == "mlflow_model"
    assert model._to_rest_object().properties.model_type == "mlflow_model"
    assert model.tags["task"] == "binary"
    meta = registry.get("flights", "1")
    assert meta["lineage"] == lineage and meta["metrics"] == {"challenger/auc": 0.7}
    assert meta["path"] == "azureml:flights:1" and registry.latest("flights") == v1
    with pytest.raises(NotFound):
        registry.get("flights", "7")
    assert json.loads(model.properties["lineage"])["run_id"] == "j1"
