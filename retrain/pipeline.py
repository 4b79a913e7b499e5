"""The retraining pipeline as an Azure ML pipeline job, built from the steps declared in `steps.py`.

azure.ai.ml is imported inside the functions: it costs about 1.5 s and only the Azure path needs it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from core.errors import ValidationFailed
from retrain.steps import COMPONENTS_DIR, DATA, NUMBER, STEPS, WIRING, Port, Step

DEFAULT_ENVIRONMENT = "azureml://registries/azureml/environments/sklearn-1.5/labels/latest"
PIPELINE_OUTPUTS = {"metrics": ("evaluate", "metrics_out"), "registered": ("register", "registered"),
                    "reference": ("evaluate", "reference_out"), "training": ("prep", "out_train")}


def _input(port: Port) -> Any:
    from azure.ai.ml import Input

    kind = "uri_folder" if port.kind == DATA else ("integer" if port.kind == NUMBER else "string")
    return Input(type=kind, optional=port.optional or None)


def component(step: Step, environment: str, code: str | Path = COMPONENTS_DIR) -> Any:
    """One command component: the step's script with its declared inputs and outputs."""
    from azure.ai.ml import Output, command

    return command(name=f"mlops_retrain_{step.name}", display_name=step.name, command=step.command(),
                   code=str(code), environment=environment,
                   inputs={p.name: _input(p) for p in step.inputs},
                   outputs={p.name: Output(type="uri_folder") for p in step.outputs})


def build_pipeline_job(arguments: Mapping[str, Any], *, environment: str = DEFAULT_ENVIRONMENT,
                       compute: str | None = None, experiment_name: str = "mlops-retrain",
                       name: str | None = None, tags: Mapping[str, str] | None = None) -> Any:
    """A PipelineJob for one retrain. `arguments` are the step parameters (local_runner.step_arguments):
    data ports are paths or azureml:// URIs (None for an absent optional input), the rest plain values."""
    from azure.ai.ml import Input, dsl

    for key, value in arguments.items():
        if isinstance(value, str) and "'" in value:
            raise ValidationFailed(f"{key} contains a single quote, which the step command cannot carry", field=key)
    components = {s.name: component(s, environment) for s in STEPS}

    @dsl.pipeline(name="mlops_retrain", description="prep -> train -> evaluate -> register",
                  default_compute=compute)
    def retrain(reference, recent, rule, features, label, time_column, holdout_days, random_state, champion,
                slices, name, lineage):
        values = {"reference": reference, "recent": recent, "rule": rule, "features": features, "label": label,
                  "time_column": time_column, "holdout_days": holdout_days, "random_state": random_state,
                  "champion": champion, "slices": slices, "name": name, "lineage": lineage}
        nodes: dict[str, Any] = {}
        for step in STEPS:
            kwargs = {}
            for port in step.inputs:
                source = WIRING.get((step.name, port.name))
                if source:
                    kwargs[port.name] = nodes[source[0]].outputs[source[1]]
                elif port.name in values and (values[port.name] is not None or not port.optional):
                    kwargs[port.name] = values[port.name]
            nodes[step.name] = components[step.name](**kwargs)
            nodes[step.name].name = step.name
        return {out: nodes[s].outputs[o] for out, (s, o) in PIPELINE_OUTPUTS.items()}

    def data(path: Any) -> Any:
        return Input(type="uri_folder", path=str(path)) if path else None

    job = retrain(reference=data(arguments["reference"]), recent=data(arguments.get("recent")),
                  rule=arguments["rule"], features=arguments["features"], label=arguments["label"],
                  time_column=arguments["time_column"], holdout_days=int(arguments["holdout_days"]),
                  random_state=int(arguments["random_state"]), champion=data(arguments.get("champion")),
                  slices=arguments["slices"], name=arguments["name"], lineage=arguments["lineage"])
    job.experiment_name = experiment_name
    if name:
        job.name = name
    job.tags = dict(tags or {})
    return job
