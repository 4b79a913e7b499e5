"""`python -m monitors init`: a starting monitor spec inferred from reference data.

Kinds come from the drift engine's `infer_kinds` (dtypes and cardinality, as evidently infers them).
The prediction and label columns are guessed only when named obviously; otherwise they are left as
comments for the user to fill in.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from core.errors import ValidationFailed
from core.files import write_atomic

PREDICTION_NAMES = ("prediction", "predicted", "pred", "y_pred", "score", "probability", "proba")
LABEL_NAMES = ("label", "target", "y", "y_true", "ground_truth", "actual", "outcome")


def guess_column(frame, names: tuple[str, ...]) -> str | None:
    lowered = {str(c).lower(): str(c) for c in frame.columns}
    return next((lowered[n] for n in names if n in lowered), None)


def prediction_kind(series) -> str:
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return "class"
    values = series.dropna()
    if values.between(0, 1).all() and not (values == values.round()).all():
        return "score"
    return "class" if (values == values.round()).all() and values.nunique() <= 10 else "value"


def label_task(series) -> str:
    """binary (0/1 or booleans), multiclass (text, or a few whole numbers) or regression."""
    import pandas as pd

    values = series.dropna()
    if pd.api.types.is_bool_dtype(series) or (pd.api.types.is_numeric_dtype(series)
                                              and set(values.unique().tolist()) <= {0, 1}):
        return "binary"
    if not pd.api.types.is_numeric_dtype(series):
        return "multiclass"
    return "multiclass" if (values == values.round()).all() and values.nunique() <= 10 else "regression"


def spec_text(frame, reference_uri: str, name: str, endpoint: str) -> str:
    from monitors.drift.profile import infer_kinds

    prediction, label = guess_column(frame, PREDICTION_NAMES), guess_column(frame, LABEL_NAMES)
    from monitors.text.infer import infer_text_columns

    inputs = frame.drop(columns=[c for c in (prediction, label) if c])
    kinds = infer_kinds(inputs)
    kinds.update({c: "text" for c in infer_text_columns(inputs, skip=frozenset(kinds))})  # needs requirements-text
    if not kinds:
        raise ValidationFailed(f"{reference_uri}: no column can be monitored (only ids, timestamps or text)",
                               field="features")
    skipped = [str(c) for c in frame.columns if str(c) not in kinds and str(c) not in (prediction, label)]
    lines = [f"# Monitor spec inferred from {reference_uri}. Review every line before use.",
             f"name: {name}", "endpoint:", f"  name: {endpoint}  # the Azure ML online endpoint to watch",
             "  # deployment: blue  # one deployment only; omit to watch the whole endpoint",
             "model:", f"  name: {name}  # the registered model's name", "features:"]
    if skipped:
        lines.insert(-1, f"# not monitored (ids, timestamps or empty): {', '.join(skipped)}")
    for feature, kind in kinds.items():
        lines += [f"  - name: {_quote(feature)}", f"    kind: {kind}"]
    lines += _output_lines(frame, prediction, label)
    lines += ["reference:", f"  uri: {_quote(reference_uri)}  # relative to this file, or azureml:name:version",
              "window:", "  size: 1d", "  lateness: 1h  # telemetry of a window is complete this long after it",
              "signals:", "  data_drift:", "    policy: calibrated  # or evidently (share of drifted features)",
              "alert:", "  consecutive: 2  # breaching windows in a row before an incident opens",
              "  cooldown: 1d", "retrain:", "  on_drift: false"]
    return "\n".join(lines) + "\n"


def _output_lines(frame, prediction: str | None, label: str | None) -> list[str]:
    lines: list[str] = []
    if prediction:
        lines += ["prediction:", f"  column: {_quote(prediction)}",
                  f"  kind: {prediction_kind(frame[prediction])}  # score | class | value"]
    else:
        lines += ["# prediction:  # the model output column, for prediction drift and performance",
                  "#   column: prediction", "#   kind: score  # score | class | value"]
    if label:
        lines += ["label:", f"  column: {_quote(label)}",
                  f"  task: {label_task(frame[label])}  # binary | multiclass | regression",
                  "  lag: 0s  # how long after the request ground truth arrives"]
    else:
        lines += ["# label:  # the ground truth column, for performance once labels arrive",
                  "#   column: label", "#   task: binary  # binary | multiclass | regression", "#   lag: 1d"]
    return lines


def _quote(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./-]*", text) else '"' + text.replace('"', '\\"') + '"'


def write_spec(reference: str | Path, out: str | Path, *, name: str | None = None, endpoint: str | None = None,
               force: bool = False) -> Path:
    from monitors.cli import UsageError, read_table
    from monitors.spec import load_spec

    reference, out = Path(reference), Path(out)
    if out.exists() and not force:
        raise UsageError(f"{out} exists (use --force to overwrite)")
    frame = read_table(reference)
    name = name or re.sub(r"[^A-Za-z0-9_.-]+", "-", reference.name.split(".")[0]).strip("-.") or "monitor"
    uri = os.path.relpath(reference.resolve(), out.resolve().parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, spec_text(frame, uri, name, endpoint or name))
    load_spec(out)  # what we write must load
    return out


