"""The retraining pipeline as an Azure ML pipeline job, built from the steps declared in `steps.py`.

prep, evaluate and register are command components of the product's own scripts (components/, in the
product's environment). The training step is the team's (docs/training.md), bound to the same inputs
(data, target, task) and output (model_out), one of:
  train            a command: a command component with the team's code folder and environment
  train_component  a registered component, azureml:name:version or azureml:name@label
  train_job        a component or pipeline job YAML (a pipeline job becomes a pipeline component)

azure.ai.ml is imported inside the functions: it costs about 1.5 s and only the Azure path needs it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from core.errors import ValidationFailed
from retrain.steps import COMPONENTS_DIR, DATA, NUMBER, STEPS, TRAIN, WIRING, Port, Step, step

DEFAULT_ENVIRONMENT = "azureml://registries/azureml/environments/sklearn-1.5/labels/latest"
PIPELINE_OUTPUTS = {"metrics": ("evaluate", "metrics_out"), "registered": ("register", "registered"),
                    "reference": ("evaluate", "reference_out"), "training": ("prep", "out_train")}
PARAMETERS = ("reference", "recent", "rule", "features", "label", "target", "task", "time_column",
              "holdout_days", "champion", "slices", "name", "lineage")


def _input(port: Port) -> Any:
    from azure.ai.ml import Input

    kind = "uri_folder" if port.kind == DATA else ("integer" if port.kind == NUMBER else "string")
    return Input(type=kind, optional=port.optional or None)


def component(step: Step, environment: str, code: str | Path = COMPONENTS_DIR, program: str | None = None,
              name: str | None = None) -> Any:
    """One command component: the step's script (or the team's `program`) with its declared inputs and outputs."""
    from azure.ai.ml import Output, command

    return command(name=name or f"mlops_retrain_{step.name}", display_name=step.name,
                   command=step.command(program), code=str(code), environment=environment,
                   inputs={p.name: _input(p) for p in step.inputs},
                   outputs={p.name: Output(type="uri_folder") for p in step.outputs})


def training_component(arguments: Mapping[str, Any], ml_client: Any = None) -> Any:
    """The team's training step as a component with the contract's inputs and output."""
    train_step = step(TRAIN)
    if arguments.get("train"):
        if not arguments.get("environment"):
            raise ValidationFailed("a train command runs in Azure ML in the team's environment: set "
                                   "`environment` beside `train` (azureml:name:version)", field="environment")
        return component(train_step, arguments["environment"], arguments.get("code") or ".",
                         program=arguments["train"], name="mlops_retrain_team_train")
    if arguments.get("train_component"):
        if ml_client is None:
            raise ValidationFailed("train_component needs the workspace client", field="train_component")
        found = _registered(arguments["train_component"], ml_client)
    elif arguments.get("train_job"):
        found = _from_yaml(arguments["train_job"])
    else:
        raise ValidationFailed("no training step: set train, train_component or train_job", field="train")
    _check_contract(found, train_step)
    return found


def _registered(reference: str, ml_client: Any) -> Any:
    text = reference.removeprefix("azureml:")
    name, _, version = text.partition(":")
    if "@" in name:
        name, label = name.split("@", 1)
        return ml_client.components.get(name=name, label=label)
    return ml_client.components.get(name=name, version=version or None)


def _from_yaml(path: str) -> Any:
    """A component YAML as it is; a pipeline job YAML (type: pipeline with jobs) as a pipeline component."""
    import yaml
    from azure.ai.ml import load_component, load_job

    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValidationFailed(f"train_job {path}: {exc}", field="train_job") from exc
    if doc.get("type") == "pipeline" and "$schema" in doc and "pipelineJob" in str(doc["$schema"]):
        return load_job(source=path)._to_component()  # the SDK's own translation of a job into a component
    return load_component(source=path)


def _check_contract(found: Any, train_step: Step) -> None:
    inputs, outputs = set(found.inputs or {}), set(found.outputs or {})
    missing = [p.name for p in train_step.inputs if p.name not in inputs]
    missing += [p.name for p in train_step.outputs if p.name not in outputs]
    if missing:
        raise ValidationFailed(f"the training component lacks the contract's {', '.join(missing)} "
                               f"(inputs data, target, task; output model_out)", field="train_component")


def build_pipeline_job(arguments: Mapping[str, Any], *, environment: str = DEFAULT_ENVIRONMENT,
                       compute: str | None = None, experiment_name: str = "mlops-retrain",
                       name: str | None = None, tags: Mapping[str, str] | None = None,
                       ml_client: Any = None) -> Any:
    """A PipelineJob for one retrain. `arguments` are the step parameters (local_runner.step_arguments):
    data ports are paths or azureml:// URIs (None for an absent optional input), the rest plain values."""
    from azure.ai.ml import Input, dsl

    for key in PARAMETERS:
        value = arguments.get(key)
        if isinstance(value, str) and "'" in value:
            raise ValidationFailed(f"{key} contains a single quote, which the step command cannot carry", field=key)
    components = {s.name: component(s, environment) for s in STEPS if s.name != TRAIN}
    components[TRAIN] = training_component(arguments, ml_client)

    @dsl.pipeline(name="mlops_retrain", description="prep -> train (the team's) -> evaluate -> register",
                  default_compute=compute)
    def retrain(reference, recent, rule, features, label, target, task, time_column, holdout_days, champion,
                slices, name, lineage):
        values = dict(zip(PARAMETERS, (reference, recent, rule, features, label, target, task, time_column,
                                       holdout_days, champion, slices, name, lineage), strict=True))
        nodes: dict[str, Any] = {}
        for each in STEPS:
            kwargs = {}
            for port in each.inputs:
                source = WIRING.get((each.name, port.name))
                if source:
                    kwargs[port.name] = nodes[source[0]].outputs[source[1]]
                elif port.name in values and (values[port.name] is not None or not port.optional):
                    kwargs[port.name] = values[port.name]
            nodes[each.name] = components[each.name](**kwargs)
            nodes[each.name].name = each.name
        return {out: nodes[s].outputs[o] for out, (s, o) in PIPELINE_OUTPUTS.items()}

    def data(path: Any) -> Any:
        return Input(type="uri_folder", path=str(path)) if path else None

    job = retrain(reference=data(arguments["reference"]), recent=data(arguments.get("recent")),
                  rule=arguments["rule"], features=arguments["features"], label=arguments["label"],
                  target=arguments["target"], task=arguments["task"], time_column=arguments["time_column"],
                  holdout_days=int(arguments["holdout_days"]), champion=data(arguments.get("champion")),
                  slices=arguments["slices"], name=arguments["name"], lineage=arguments["lineage"])
    job.experiment_name = experiment_name
    if name:
        job.name = name
    job.tags = dict(tags or {})
    return job
