"""Builds RetrainDeps from the composition root's container (bootstrap.Container).

Local by default: runs, registry and endpoint state under the data folder. Azure ML when the workspace
settings are present. What to retrain comes from the monitor specs that declare a label: the model
name, feature kinds, label column and reference data (the container hands them over; retrain does
not import monitors).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from retrain.config import apply_overrides, check_gate, load_config
from retrain.deps import RetrainConfig, RetrainDeps, RetrainTarget


def targets_from_specs(specs: list[Any]) -> dict[str, RetrainTarget]:
    targets = {}
    for spec in specs:
        if spec.label is None:
            continue
        reference = spec.reference.uri
        if not reference.startswith("azureml:"):
            reference = str((spec.base_dir / reference).resolve())
        kinds = dict(spec.kinds)
        targets[spec.endpoint.name] = RetrainTarget(
            endpoint=spec.endpoint.name, model_name=spec.model.name, features=kinds, label=spec.label.column,
            task=spec.label.task, reference=reference, slices=tuple(n for n, k in kinds.items() if k == "categorical"))
    return targets


def build_deps(container: Any, config: RetrainConfig | None = None) -> RetrainDeps:
    settings, data_dir = container.settings, Path(container.data_dir)
    base = config or RetrainConfig(export_dir=data_dir / "retrain" / "exports")
    config, overrides = load_config(getattr(settings, "retrain_config", None), base)
    targets = apply_overrides(targets_from_specs(container.specs.all()), overrides)
    check_gate(config, targets)
    if settings.azureml_configured:
        runner, registry, deployer = _azureml(container.ml_client)
    else:
        from retrain.deploy import LocalDeployer
        from retrain.local_runner import LocalPipelineRunner
        from retrain.registry import LocalModelRegistry

        registry = LocalModelRegistry(data_dir / "registry")
        runner = LocalPipelineRunner(data_dir / "retrain", registry_root=registry.root)
        from retrain.serving import DeploymentSpec

        template = DeploymentSpec.from_file(settings.local_deployment) if settings.local_deployment else None
        deployer = LocalDeployer(data_dir / "endpoints.json", registry, template=template)
    return RetrainDeps(store=container.store, publisher=container.publisher, runner=runner, registry=registry,
                       deployer=deployer, health=container.health, labelled=container.telemetry,
                       clock=container.clock, targets=targets, config=config)


def _azureml(client: Any) -> tuple[Any, Any, Any]:
    """The runner, registry and deployer on the process's one MLClient (the container's)."""
    from retrain.azureml_runner import AzureMLPipelineRunner
    from retrain.deploy import AzureMLDeployer
    from retrain.registry import AzureMLModelRegistry

    registry = AzureMLModelRegistry(client)
    return AzureMLPipelineRunner(client, registry=registry), registry, AzureMLDeployer(client)
