"""Runs the retraining pipeline as an Azure ML pipeline job.

The job name is derived from the idempotency key, so a resubmission finds the job it already made
(`jobs.get(name)`) instead of creating a second one. On success the evaluate and register outputs are
downloaded for the metrics and lineage, and the model package is registered in the workspace registry.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any, Mapping

from core.azure_errors import azure_error, translated
from core.errors import ConcurrencyConflict, PermanentError, RetryableError, RunnerUnavailable
from core.types import ModelVersion, RunRef, RunState, RunStatus
from retrain.data_assets import AzureMLDataAssets
from retrain.local_runner import step_arguments
from retrain.pipeline import DEFAULT_ENVIRONMENT, build_pipeline_job
from retrain.registry import AzureMLModelRegistry

BACKEND = "azureml"
RUN_DATA = {"training": "training", "reference": "reference"}  # data asset kind -> pipeline output
STATES = {
    "NotStarted": RunState.QUEUED, "Queued": RunState.QUEUED, "Preparing": RunState.QUEUED,
    "Starting": RunState.QUEUED, "Provisioning": RunState.QUEUED, "Running": RunState.RUNNING,
    "Finalizing": RunState.RUNNING, "CancelRequested": RunState.RUNNING, "Paused": RunState.RUNNING,
    "Completed": RunState.SUCCEEDED, "Failed": RunState.FAILED, "NotResponding": RunState.FAILED,
    "Canceled": RunState.CANCELLED,
}


def azureml_job_name(idempotency_key: str) -> str:
    """Job names allow letters, digits, '-' and '_': a hash keeps any key within the rules."""
    return "mlops-retrain-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def _http_error(exc: Exception, what: str) -> Exception:
    """The one translation of SDK errors (core.azure_errors); an outage is RunnerUnavailable (retryable)."""
    error = azure_error(exc, what, service="Azure ML")
    if isinstance(error, RetryableError) and not isinstance(error, ConcurrencyConflict):
        return RunnerUnavailable(str(error))
    return error


class AzureMLPipelineRunner:
    backend = BACKEND

    def __init__(self, ml_client: Any, *, compute: str | None = None, environment: str = DEFAULT_ENVIRONMENT,
                 experiment_name: str = "mlops-retrain", registry: AzureMLModelRegistry | None = None) -> None:
        self.ml_client = ml_client
        self.compute, self.environment, self.experiment_name = compute, environment, experiment_name
        self.registry = registry or AzureMLModelRegistry(ml_client)
        self._finished: dict[str, RunStatus] = {}

    @translated("Azure ML")
    def submit(self, request: Mapping[str, Any], *, idempotency_key: str) -> RunRef:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        name = azureml_job_name(idempotency_key)
        run_id = request.get("run_id") or name
        try:
            self.ml_client.jobs.get(name)
            return RunRef(run_id, BACKEND, name)  # a resubmission: the job exists already
        except ResourceNotFoundError:
            pass
        except HttpResponseError as exc:
            raise _http_error(exc, f"cannot look up job {name}") from exc
        arguments = step_arguments({**request, "run_id": run_id}, Path("."))
        arguments.pop("registry")  # in Azure ML the runner registers the package, not the step
        job = build_pipeline_job(arguments, environment=self.environment, compute=self.compute,
                                 experiment_name=self.experiment_name, name=name, ml_client=self.ml_client,
                                 tags={"run_id": run_id, "model_name": request["model_name"],
                                       "endpoint": str(request.get("endpoint") or "")})
        try:
            created = self.ml_client.jobs.create_or_update(job, experiment_name=self.experiment_name)
        except HttpResponseError as exc:
            raise _http_error(exc, f"cannot submit job {name}") from exc
        return RunRef(run_id, BACKEND, created.name or name)

    @translated("Azure ML")
    def status(self, run: RunRef) -> RunStatus:
        from azure.core.exceptions import HttpResponseError

        name = run.external_id or run.run_id
        if name in self._finished:
            return self._finished[name]
        try:
            job = self.ml_client.jobs.get(name)
            children = list(self.ml_client.jobs.list(parent_job_name=name))
        except HttpResponseError as exc:
            raise _http_error(exc, f"cannot read job {name}") from exc
        state = STATES.get(job.status, RunState.RUNNING)
        steps = {(c.display_name or c.name): STATES.get(c.status, RunState.RUNNING).value for c in children}
        if state is RunState.FAILED or state is RunState.CANCELLED:
            failed = next((s for s, v in steps.items() if v == RunState.FAILED.value), None)
            status = RunStatus(state, failed_step=failed, steps=steps,
                               error=f"step {failed or '?'} {job.status}; logs: {job.studio_url}")
        elif state is RunState.SUCCEEDED:
            status = self._completed(job, steps)
        else:
            return RunStatus(state, steps=steps)
        self._finished[name] = status
        return status

    def _completed(self, job: Any, steps: dict[str, str]) -> RunStatus:
        with tempfile.TemporaryDirectory() as tmp:
            for output in ("metrics", "registered"):
                self.ml_client.jobs.download(name=job.name, output_name=output, download_path=tmp)
            metrics = json.loads(_find(Path(tmp), "metrics.json", "metrics").read_text())["flat"]
            lineage = json.loads(_find(Path(tmp), "lineage.json", "registered").read_text())
        model_name = (job.tags or {}).get("model_name")
        if not model_name:
            raise PermanentError(f"job {job.name} has no model_name tag; it was not submitted by this runner")
        data = AzureMLDataAssets(self.ml_client).register_run_data(job.name, model_name, RUN_DATA)
        lineage = {**lineage, "training_data": data["training"], "reference": data["reference"]}
        version = self.registry.register(
            model_name, f"azureml://jobs/{job.name}/outputs/registered/paths/model/", metrics=metrics,
            lineage=lineage, description=f"retrained by pipeline job {job.name}")
        return RunStatus(RunState.SUCCEEDED, metrics=metrics, model=ModelVersion(version.name, version.version),
                         steps=steps)


def _find(root: Path, filename: str, output: str) -> Path:
    found = sorted(p for p in root.rglob(filename) if output in p.parts) or sorted(root.rglob(filename))
    if not found:
        raise PermanentError(f"output {output} has no {filename}")
    return found[0]
