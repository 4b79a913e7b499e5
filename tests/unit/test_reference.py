"""Reference data from a path or an Azure ML data asset; the fingerprint follows the content."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from azure.core.exceptions import ResourceNotFoundError

from core.errors import NotFound, ValidationFailed
from monitors.reference import AzureMLDataReference, FileReference, ReferenceLoader, load_reference


def write(path, rows: int, value: float = 1.0):
    pd.DataFrame({"distance": [value] * rows, "origin": ["JFK"] * rows}).to_parquet(path)
    return path


def test_file_fingerprint_changes_with_content_and_only_with_content(tmp_path):
    path = write(tmp_path / "ref.parquet", 10)
    ref = load_reference("ref.parquet", base_dir=tmp_path)
    first = ref.fingerprint
    assert isinstance(ref, FileReference) and ref.frame().shape == (10, 2)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # touched, same bytes: same fingerprint
    assert ref.fingerprint == first
    write(path, 10, value=2.0)
    assert ref.fingerprint != first
    assert ref.frame()["distance"].iloc[0] == 2.0  # the cached frame was not served stale


def test_a_folder_reference_reads_every_file_and_fingerprints_them_all(tmp_path):
    folder = tmp_path / "ref"
    folder.mkdir()
    write(folder / "a.parquet", 3)
    pd.DataFrame({"distance": [5.0], "origin": ["LGA"]}).to_csv(folder / "b.csv", index=False)
    ref = load_reference(str(folder), base_dir=tmp_path / "elsewhere")
    assert len(ref.frame()) == 4
    before = ref.fingerprint
    (folder / "b.csv").write_text("distance,origin\n6.0,EWR\n")
    assert ref.fingerprint != before


def test_missing_or_unsupported_references_name_the_field(tmp_path):
    with pytest.raises(ValidationFailed) as missing:
        load_reference("nope.parquet", base_dir=tmp_path)
    assert missing.value.field == "reference.uri"
    (tmp_path / "ref.xlsx").write_bytes(b"x")
    with pytest.raises(ValidationFailed, match="unsupported format"):
        load_reference("ref.xlsx", base_dir=tmp_path).frame()
    with pytest.raises(ValidationFailed, match="azureml:<name>:<version>"):
        load_reference("azureml:flights", base_dir=tmp_path, ml_client=object(), cache_dir=tmp_path)


@dataclass
class Data:  # the fields of azure.ai.ml.entities.Data this code reads
    id: str
    name: str
    version: str
    path: str


class FakeDataOperations:
    def __init__(self) -> None:
        self.assets: dict[str, Data] = {}
        self.calls = 0

    def get(self, name: str, version: str | None = None, label: str | None = None) -> Data:
        self.calls += 1
        if label == "latest":
            versions = [a for a in self.assets.values() if a.name == name]
            if not versions:
                raise ResourceNotFoundError(f"{name} not found")
            return max(versions, key=lambda a: int(a.version))
        if f"{name}:{version}" not in self.assets:
            raise ResourceNotFoundError(f"{name}:{version} not found")
        return self.assets[f"{name}:{version}"]

    def add(self, name: str, version: str, path) -> None:
        asset_id = f"/subscriptions/s/resourceGroups/rg/workspaces/w/data/{name}/versions/{version}"
        self.assets[f"{name}:{version}"] = Data(asset_id, name, version, str(path))


class FakeMLClient:
    def __init__(self) -> None:
        self.data = FakeDataOperations()


def test_azureml_asset_versions_have_their_own_fingerprints_and_latest_follows(tmp_path):
    client = FakeMLClient()
    client.data.add("flights-ref", "1", write(tmp_path / "v1.parquet", 5))
    client.data.add("flights-ref", "2", write(tmp_path / "v2.parquet", 7))
    loader = ReferenceLoader(tmp_path / "data" / "references", ml_client=lambda: client)
    v1 = loader.load("azureml:flights-ref:1", tmp_path)
    latest = loader.load("azureml:flights-ref@latest", tmp_path)
    assert isinstance(v1, AzureMLDataReference)
    assert len(v1.frame()) == 5 and len(latest.frame()) == 7
    assert v1.fingerprint != latest.fingerprint
    before = latest.fingerprint
    client.data.add("flights-ref", "3", write(tmp_path / "v3.parquet", 9))
    assert latest.fingerprint != before and len(latest.frame()) == 9
    assert loader.load("azureml:flights-ref:1", tmp_path).fingerprint == v1.fingerprint


def test_a_missing_azureml_asset_is_not_found(tmp_path):
    ref = ReferenceLoader(tmp_path, ml_client=FakeMLClient).load("azureml:nothing:4", tmp_path)
    with pytest.raises(NotFound, match="azureml:nothing:4"):
        ref.frame()


@dataclass
class Datastore:  # the fields of azure.ai.ml.entities.AzureBlobDatastore this code reads
    name: str
    account_name: str
    container_name: str
    endpoint: str = "core.windows.net"
    protocol: str = "https"


@pytest.mark.azurite
def test_an_azureml_asset_on_a_blob_datastore_is_downloaded_once_and_read(tmp_path):
    from azure.storage.blob import BlobServiceClient

    from tests.azurite import DEV_ACCOUNT, running_azurite, unique_name

    with running_azurite() as az:
        container = unique_name("ref")
        service = BlobServiceClient(az.blob_endpoint, credential=az.credential)
        service.create_container(container)
        for part, rows in (("a", 4), ("b", 6)):
            write(tmp_path / f"{part}.parquet", rows)
            service.get_blob_client(container, f"refs/flights/{part}.parquet").upload_blob(
                (tmp_path / f"{part}.parquet").read_bytes())
        client = FakeMLClient()
        client.data.add("flights-ref", "5", "azureml://subscriptions/s/resourcegroups/rg/workspaces/w/"
                                            "datastores/workspaceblobstore/paths/refs/flights/")
        client.datastores = type("Datastores", (), {"get": lambda self, name: Datastore(name, DEV_ACCOUNT,
                                                                                          container)})()
        ref = AzureMLDataReference("azureml:flights-ref:5", client, cache_dir=tmp_path / "cache",
                                   credential=az.credential, blob_account_url=az.blob_endpoint)
        assert len(ref.frame()) == 10
        service.delete_container(container)  # the copy in the cache is what is read from now on
        assert len(AzureMLDataReference("azureml:flights-ref:5", client, cache_dir=tmp_path / "cache").frame()) == 10


def test_without_azure_ml_settings_an_azureml_reference_is_a_configuration_error_naming_them(tmp_path):
    from core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="AZUREML_WORKSPACE"):
        ReferenceLoader(tmp_path).load("azureml:flights-ref:1", tmp_path)
    assert len(ReferenceLoader(tmp_path).load(str(write(tmp_path / "r.parquet", 3)), tmp_path).frame()) == 3


def test_an_asset_registered_from_a_job_output_is_the_jobs_download_cached_under_the_data_folder(tmp_path):
    class FakeJobs:
        downloads = 0

        def download(self, name, output_name, download_path):
            FakeJobs.downloads += 1
            folder = Path(download_path) / "named-outputs" / output_name  # the layout jobs.download writes
            folder.mkdir(parents=True)
            write(folder / "reference.parquet", 6)

    client = FakeMLClient()
    client.jobs = FakeJobs()
    client.data.add("flights-reference", "2", "azureml://jobs/mlops-retrain-1/outputs/reference/")
    cache = tmp_path / "data" / "references"
    for _ in range(2):  # a second loader (a later check) reads the cached copy
        loader = ReferenceLoader(cache, ml_client=lambda: client)
        assert len(loader.load("azureml:flights-reference:2", tmp_path).frame()) == 6
    assert FakeJobs.downloads == 1 and len(list(cache.iterdir())) == 1
