"""The composition root builds one credential and one MLClient for the process, and every Azure adapter uses them
(offline: constructing them makes no network call)."""
from __future__ import annotations

from pathlib import Path

from bootstrap import Container
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def azure_settings(tmp_path) -> Settings:
    return Settings(**{
        "MLOPS_DATA_DIR": str(tmp_path / "data"), "MLOPS_MONITORS_DIR": str(ROOT / "monitors" / "examples"),
        "AZUREML_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000", "AZUREML_RESOURCE_GROUP": "rg",
        "AZUREML_WORKSPACE": "ws", "ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
        "MLOPS_TABLES_ENDPOINT": "https://acct.table.core.windows.net",
        "MLOPS_BLOB_ENDPOINT": "https://acct.blob.core.windows.net"})


def test_one_credential_and_one_ml_client_serve_every_azure_adapter(tmp_path):
    box = Container(azure_settings(tmp_path))
    client, credential = box.ml_client, box.credential
    assert box.ml_client is client and client._credential is credential
    deps = box.retrain_deps
    assert deps.runner.ml_client is client and deps.registry.ml_client is client and deps.deployer.ml_client is client
    assert box.check_deps.references is box.references
    assert box.references._ml_client() is client and box.references._credential() is credential
    assert box.references.cache_dir == tmp_path / "data" / "references"  # under MLOPS_DATA_DIR, not the package
    assert box.publisher.inner._credential is credential
    assert box.store._credential is credential and box.reports._credential is credential


def test_without_azure_ml_settings_no_client_is_built_and_references_stay_local(tmp_path):
    import pytest

    from core.errors import ConfigurationError

    box = Container(Settings(**{"MLOPS_DATA_DIR": str(tmp_path / "data")}))
    with pytest.raises(ConfigurationError, match="AZUREML_SUBSCRIPTION_ID"):
        box.ml_client  # noqa: B018 - the property builds the client
    with pytest.raises(ConfigurationError, match="Azure ML settings"):
        box.references.load("azureml:flights-ref:1", tmp_path)
