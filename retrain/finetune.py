"""In Azure ML, the training step as a fine-tuning job of a model-catalog model (azure-ai-ml's create_finetuning_job).

Instead of the team's training command, an endpoint's retrain configuration may name a catalog model to fine-tune:

    endpoints:
      tweets:
        finetune:
          model: azureml://registries/azureml/models/Phi-4-mini-instruct/versions/1
          task: text_classification            # or chat_completion (the label as the assistant's answer)
          text_column: text                    # default: the monitor's one text feature
          hyperparameters: {num_train_epochs: 3, learning_rate: 2e-5}
          compute: gpu-cluster                 # or instance_types: [Standard_NC24ads_A100_v4] (serverless)
          validation_share: 0.1                # the most recent rows of the training window validate the job

The prep step's training rows become two JSON Lines files in the shape the task expects, the most recent
`validation_share` of them for validation (the fine-tuning job requires validation data: azure-ai-ml 1.35 fails on
its own without it); the job registers an MLflow model named `<model>-ft`, which evaluate, the gate, canary and
rollback then treat like any challenger. Everything here builds and validates offline; submitting is the MLClient's
`jobs.create_or_update`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from core.errors import ConfigurationError

TASKS = {"text_classification": "TextClassification", "chat_completion": "ChatCompletion"}
SYSTEM_PROMPT = "Answer with the one label that fits the text."


@dataclass(frozen=True)
class FineTuneConfig:
    model: str
    task: str = "text_classification"
    text_column: str | None = None
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    compute: str | None = None
    instance_types: tuple[str, ...] = ()
    validation_share: float = 0.1
    system_prompt: str = SYSTEM_PROMPT

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any], where: str = "finetune") -> "FineTuneConfig":
        unknown = sorted(set(doc) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigurationError(f"{where}: unknown keys {unknown}")
        model = str(doc.get("model") or "")
        if not model.startswith(("azureml://registries/", "azureml:")):
            raise ConfigurationError(f"{where}.model: a model-catalog or workspace model URI (azureml://registries/"
                                     f"<registry>/models/<name>/versions/<n> or azureml:<name>:<version>), got "
                                     f"{model!r}")
        task = str(doc.get("task", "text_classification"))
        if task not in TASKS:
            raise ConfigurationError(f"{where}.task: one of {sorted(TASKS)}, got {task!r}")
        share = float(doc.get("validation_share", 0.1))
        if not 0.0 < share < 0.5:
            raise ConfigurationError(f"{where}.validation_share must be in (0, 0.5), got {share}")
        if doc.get("compute") and doc.get("instance_types"):
            raise ConfigurationError(f"{where}: name a compute cluster or serverless instance_types, not both")
        # the service takes hyperparameters as strings
        hyper = {str(k): str(v) for k, v in (doc.get("hyperparameters") or {}).items()}
        return cls(model, task, doc.get("text_column"), hyper, doc.get("compute"),
                   tuple(doc.get("instance_types") or ()), share, str(doc.get("system_prompt", SYSTEM_PROMPT)))


def records(frame: Any, text_column: str, target: str, task: str, system_prompt: str = SYSTEM_PROMPT) -> list[dict]:
    """One JSON object per labelled row, as the fine-tuning task reads it; rows without text are left out."""
    out = []
    for text, label in zip(frame[text_column].tolist(), frame[target].tolist(), strict=True):
        if not isinstance(text, str) or not text.strip() or label is None:
            continue
        label = label.item() if hasattr(label, "item") else label
        if task == "text_classification":
            out.append({"text": text, "label": label})
        else:
            out.append({"messages": [{"role": "system", "content": system_prompt},
                                     {"role": "user", "content": text},
                                     {"role": "assistant", "content": str(label)}]})
    return out


def write_jsonl(frame: Any, config: FineTuneConfig, *, text_column: str, target: str, time_column: str | None,
                out: Path) -> tuple[Path, Path]:
    """training.jsonl and validation.jsonl (the most recent rows) under `out`."""
    ordered = frame.sort_values(time_column, kind="stable") if time_column and time_column in frame else frame
    rows = records(ordered, text_column, target, config.task, config.system_prompt)
    if len(rows) < 10:
        raise ConfigurationError(f"fine-tuning needs at least 10 labelled texts, the training window has {len(rows)}")
    cut = len(rows) - max(1, round(len(rows) * config.validation_share))
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "training.jsonl", out / "validation.jsonl"
    for path, part in zip(paths, (rows[:cut], rows[cut:]), strict=True):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return paths


def finetuning_job(config: FineTuneConfig, *, training: str, validation: str, output_model: str, name: str,
                   experiment: str, tags: Mapping[str, str] | None = None) -> Any:
    """The Azure ML fine-tuning job (azure.ai.ml CustomModelFineTuningJob), ready for `jobs.create_or_update`."""
    from azure.ai.ml.finetuning import FineTuningTaskType, create_finetuning_job

    task = getattr(FineTuningTaskType, config.task.upper())
    return create_finetuning_job(
        model=config.model, task=task, training_data=training, validation_data=validation,
        output_model_name_prefix=output_model, hyperparameters=dict(config.hyperparameters) or None,
        compute=config.compute, instance_types=list(config.instance_types) or None, name=name,
        experiment_name=experiment, display_name=f"{output_model} fine-tuning", tags=dict(tags or {}))
