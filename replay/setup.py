"""The monitor spec and the retrain configuration of a replay, from the team's files or inferred.

The loop's names are fixed where the telemetry fixes them: ground truth is `label`, answers are `score`
(binary) or `prediction` (multiclass, regression). A team's spec keeps its features, windows, signals and
alert policy; its label, prediction and reference are pointed at the replay's own.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from core.errors import ValidationFailed
from replay.workspace import LABEL, PREDICTION, Workspace

DEFAULT_LAG = "1d"  # an inferred spec's label lag: ground truth a day after the request


def monitor_spec(ws: Workspace, spec: Path | None, history: Any, *, name: str) -> Any:
    """Writes the replay's spec to ws.spec_path and returns it loaded (a monitors.spec.MonitorSpec)."""
    from monitors.spec import load_spec

    if spec is not None:
        try:
            doc = yaml.safe_load(Path(spec).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValidationFailed(f"{spec}: {exc}", field="spec") from exc
    else:
        doc = _inferred(history, name, name)
    features = {f["name"]: f["kind"] for f in doc.get("features") or [] if isinstance(f, dict)}
    missing = [f for f in features if f not in history.frame.columns]
    if missing:
        raise ValidationFailed(f"{history.path}: no column {missing[0]!r}, a feature of {spec}", field=missing[0])
    if LABEL in features:
        raise ValidationFailed(f"{spec or history.path}: a feature named {LABEL!r} clashes with the loop's ground "
                               f"truth column; rename it", field=LABEL)
    column, kind = PREDICTION[history.task]
    label = doc.get("label") if isinstance(doc.get("label"), dict) else {}
    doc.update(label={"column": LABEL, "task": history.task, "lag": label.get("lag", DEFAULT_LAG)},
               prediction={"column": column, "kind": kind},
               reference={"uri": os.path.relpath(ws.reference_path, ws.spec_path.parent)},
               retrain={**(doc.get("retrain") or {}), "on_drift": True})
    ws.spec_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_spec(ws.spec_path)  # what we wrote must load: a bad team spec fails here, naming the field


def _inferred(history: Any, name: str, endpoint: str) -> dict[str, Any]:
    """As `monitors init` would infer it from the history's columns other than the time and the target."""
    from monitors.spec_init import spec_text

    frame = history.frame.drop(columns=[history.time_column, history.target])
    return yaml.safe_load(spec_text(frame, "reference.parquet", name, endpoint))


def retrain_config(ws: Workspace, config: Path | None, *, endpoint: str, train: str, code: Path) -> Path:
    """The team's retrain config (or the defaults) with the replay's endpoint trained by `train`, run in `code`."""
    doc: dict[str, Any] = {}
    if config is not None:
        try:
            doc = yaml.safe_load(Path(config).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValidationFailed(f"{config}: {exc}", field="config") from exc
    else:  # a canary needs enough requests to be judged: a day at a fifth of the traffic, not 6 h at a tenth
        doc = {"canary": {"percent": 20, "bake": "1d"}}
    entries = doc.get("endpoints") or {}
    entry = dict(entries.get(endpoint) or (next(iter(entries.values())) if len(entries) == 1 else {}))
    for key in ("train_component", "train_job", "environment"):
        entry.pop(key, None)
    entry.update(train=train, code=str(Path(code).resolve()))
    ws.config_path.write_text(yaml.safe_dump({**doc, "endpoints": {endpoint: entry}}, sort_keys=False))
    return ws.config_path
