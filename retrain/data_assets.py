"""References and training windows as Azure ML data assets, each version tagged with its fingerprint.

A retrain run's data is what an auditor asks for next to the model: what was it trained on, and against what is
it monitored? In Azure ML they are the pipeline job's outputs; registered as data assets (`<model>-training`,
`<model>-reference`), they outlive the job's folder names, show in the workspace, and an `azureml:` reference
(monitors.reference) reads them. The fingerprint tag says which content a version holds: registering the same
content again returns the version that has it, so a retried registration makes no second version.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

from core.azure_errors import translated

FINGERPRINT_TAG = "mlops-fingerprint"


@dataclass(frozen=True)
class DataAssetRef:
    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"azureml:{self.name}:{self.version}"


def output_fingerprint(job_name: str, output: str) -> str:
    """A completed job's output never changes: its identity is its fingerprint (nothing downloaded for it)."""
    return "azureml-job:" + hashlib.sha256(f"{job_name}/{output}".encode()).hexdigest()


class AzureMLDataAssets:
    def __init__(self, ml_client: Any) -> None:
        self.ml_client = ml_client

    @translated("Azure ML")
    def register(self, name: str, path: str, *, fingerprint: str, kind: str, description: str = "",
                 tags: Mapping[str, str] | None = None, asset_type: str = "uri_folder") -> DataAssetRef:
        """The version of `name` holding `fingerprint`, made if there is none (versions count up from 1)."""
        from azure.ai.ml.entities import Data
        from azure.core.exceptions import ResourceNotFoundError

        try:
            existing = list(self.ml_client.data.list(name=name))
        except ResourceNotFoundError:
            existing = []
        for asset in existing:
            if (asset.tags or {}).get(FINGERPRINT_TAG) == fingerprint:
                return DataAssetRef(name, str(asset.version))
        version = str(max((int(a.version) for a in existing if str(a.version).isdigit()), default=0) + 1)
        created = self.ml_client.data.create_or_update(Data(
            name=name, version=version, path=path, type=asset_type, description=description,
            tags={**dict(tags or {}), FINGERPRINT_TAG: fingerprint, "mlops-kind": kind}))
        return DataAssetRef(name, str(created.version))

    @translated("Azure ML")
    def register_run_data(self, job_name: str, model: str, outputs: Mapping[str, str]) -> dict[str, str]:
        """A completed pipeline job's data outputs (kind -> output name, e.g. {"training": "train",
        "reference": "reference_out"}) as `<model>-<kind>` assets; returns kind -> azureml: URI."""
        uris = {}
        for kind, output in outputs.items():
            ref = self.register(f"{model}-{kind}", f"azureml://jobs/{job_name}/outputs/{output}/",
                                fingerprint=output_fingerprint(job_name, output), kind=kind,
                                description=f"{kind} data of pipeline job {job_name}",
                                tags={"job": job_name, "model": model})
            uris[kind] = ref.uri
        return uris
