"""Retrain settings from an optional YAML file (MLOPS_RETRAIN_CONFIG); every key is optional.

    policy:   {cooldown: 7d, max_per_day: 1, min_new_labelled_rows: 1000,
               require_performance_at_risk: true, min_performance_drop: 0.02, noise_z: 2.0,
               max_model_age: null, rejection_backoff: 2}
    gate:     {primary_metric: auc, min_improvement: 0.005, max_slice_regression: 0.02,
               min_holdout_rows: 200, min_slice_rows: 500}
    canary:   {percent: 10, bake: 6h, max_error_rate: 0.02, max_p95_latency_ms: 500, min_requests: 50}
    deadlines: {requested: 1d, running: 2d, trained: 6h, accepted: 6h, canary: 1d, promoting: 6h, rolling_back: 6h}
    endpoints:
      flights: {rule: "sliding:90", holdout_days: 7, lookback: 60d, slices: [origin],
                train: "python train.py", code: ../examples/flights}

Per endpoint, the training step (docs/training.md) is one of: `train` (a command, run in `code`, a folder
relative to this file, default this file's folder; in Azure ML a command component with `environment`),
`train_component` (an Azure ML registered component, azureml:name:version) or `train_job` (an Azure ML
pipeline job YAML, relative to this file), each taking --data/--target/--task and writing --model-out.
The gate's `primary_metric` defaults to the task's (auc, macro_f1, mae).

Durations are a number and a unit (core.types.parse_duration): 45s, 30m, 6h, 7d, 2w.
Unknown keys are refused, naming the key.
"""
from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

from core.errors import ValidationFailed
from core.types import parse_duration
from retrain.deps import RetrainConfig, RetrainTarget
from retrain.gate import GatePolicy

_CANARY = {"percent": "canary_percent", "bake": "bake", "max_error_rate": "max_error_rate",
           "max_p95_latency_ms": "max_p95_latency_ms", "min_requests": "min_canary_requests"}
_TARGET = ("rule", "holdout_days", "lookback", "slices", "time_column", "train", "code", "environment",
           "train_component", "train_job")
_TRAINING = ("train", "train_component", "train_job")


def duration(value: Any, field: str) -> timedelta:
    """core.types.parse_duration (the one duration rule), with the config key named on failure."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValidationFailed(f"{field}: {exc}", field=field) from exc


def _section(doc: Mapping[str, Any], name: str, allowed: Any) -> dict[str, Any]:
    section = doc.get(name) or {}
    if not isinstance(section, Mapping):
        raise ValidationFailed(f"{name} must be a mapping", field=name)
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise ValidationFailed(f"{name}: unknown key(s) {', '.join(unknown)}", field=f"{name}.{unknown[0]}")
    return dict(section)


def parse_config(doc: Mapping[str, Any], base: RetrainConfig, base_dir: Path = Path(".")
                 ) -> tuple[RetrainConfig, dict[str, dict[str, Any]]]:
    """(config, per-endpoint target overrides) from the parsed YAML document; paths relative to base_dir."""
    unknown = sorted(set(doc) - {"policy", "gate", "canary", "deadlines", "endpoints"})
    if unknown:
        raise ValidationFailed(f"unknown section(s) {', '.join(unknown)}", field=unknown[0])
    policy = _section(doc, "policy", ("cooldown", "max_per_day", "min_new_labelled_rows",
                                      "require_performance_at_risk", "min_performance_drop", "max_model_age",
                                      "noise_z", "rejection_backoff"))
    if "cooldown" in policy:
        policy["cooldown"] = duration(policy["cooldown"], "policy.cooldown")
    if policy.get("max_model_age") is not None:  # null: off
        policy["max_model_age"] = duration(policy["max_model_age"], "policy.max_model_age")
    backoff = policy.get("rejection_backoff", 1)
    if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 1:
        raise ValidationFailed(f"policy.rejection_backoff {backoff!r}: a number, at least 1 (1: off)",
                               field="policy.rejection_backoff")
    gate = _section(doc, "gate", [f.name for f in dataclasses.fields(GatePolicy)])
    canary = _section(doc, "canary", _CANARY)
    if "bake" in canary:
        canary["bake"] = duration(canary["bake"], "canary.bake")
    from retrain.runs import ACTIVE  # a deadline per state a run can wait in (retrain.runs)

    deadlines = {state: duration(value, f"deadlines.{state}")
                 for state, value in _section(doc, "deadlines", sorted(ACTIVE)).items()}
    try:
        config = dataclasses.replace(base, retrain=dataclasses.replace(base.retrain, **policy),
                                     gate=dataclasses.replace(base.gate, **gate),
                                     **{_CANARY[k]: v for k, v in canary.items()},
                                     **({"deadlines": {**base.deadlines, **deadlines}} if deadlines else {}))
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"retrain config: {exc}", field="gate") from exc
    overrides = {}
    for endpoint in _section(doc, "endpoints", doc.get("endpoints") or {}):
        entry = _section(doc["endpoints"], endpoint, _TARGET)
        if "lookback" in entry:
            entry["lookback"] = duration(entry["lookback"], f"endpoints.{endpoint}.lookback")
        if "slices" in entry:
            entry["slices"] = tuple(entry["slices"])
        overrides[endpoint] = _training(entry, endpoint, base_dir)
    return config, overrides


def _training(entry: dict[str, Any], endpoint: str, base_dir: Path) -> dict[str, Any]:
    named = [k for k in _TRAINING if entry.get(k)]
    if len(named) > 1:
        raise ValidationFailed(f"endpoints.{endpoint}: name one training step, not {' and '.join(named)}",
                               field=f"endpoints.{endpoint}.{named[1]}")
    for key in _TRAINING:
        if key in entry and (not isinstance(entry[key], str) or not entry[key].strip()):
            raise ValidationFailed(f"endpoints.{endpoint}.{key} must be a non-empty string",
                                   field=f"endpoints.{endpoint}.{key}")
    if entry.get("train") or "code" in entry:
        entry["code"] = str((base_dir / str(entry.get("code") or ".")).resolve())
    if entry.get("train_job"):
        entry["train_job"] = str((base_dir / entry["train_job"]).resolve())
    return entry


def load_config(path: str | Path | None, base: RetrainConfig) -> tuple[RetrainConfig, dict[str, dict[str, Any]]]:
    if path is None:
        return base, {}
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValidationFailed(f"retrain config {path}: {exc}", field="MLOPS_RETRAIN_CONFIG") from exc
    if not isinstance(doc, Mapping):
        raise ValidationFailed(f"retrain config {path} must be a mapping", field="MLOPS_RETRAIN_CONFIG")
    return parse_config(doc, base, Path(path).resolve().parent)


def apply_overrides(targets: Mapping[str, RetrainTarget],
                    overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, RetrainTarget]:
    unknown = sorted(set(overrides) - set(targets))
    if unknown:
        raise ValidationFailed(f"retrain config names endpoint(s) with no monitor spec: {', '.join(unknown)}",
                               field=f"endpoints.{unknown[0]}")
    return {name: dataclasses.replace(t, **overrides.get(name, {})) for name, t in targets.items()}


def check_gate(config: RetrainConfig, targets: Mapping[str, RetrainTarget]) -> None:
    """A gate metric set for every endpoint must exist for every endpoint's task."""
    for name, target in targets.items():
        try:
            config.gate.for_task(target.task)
        except ValueError as exc:
            raise ValidationFailed(f"gate.primary_metric: {exc} (endpoint {name})",
                                   field="gate.primary_metric") from exc
