"""Export an endpoint's labelled recent traffic as the pipeline's `recent` input (Parquet)."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.files import write_atomic
from core.types import EndpointRef, Window

if TYPE_CHECKING:
    from retrain.deps import RetrainDeps, RetrainTarget


def export_labelled(deps: "RetrainDeps", target: "RetrainTarget", window: Window, run_id: str,
                    since: datetime | None) -> dict[str, Any]:
    """Rows of `window` whose label arrived, with features + label + time; `new_rows` counts those after
    `since` (the end of the previous retrain's data). Writes <export_dir>/<run_id>/recent/part-0.parquet."""
    import pandas as pd

    frame = deps.labelled.fetch(EndpointRef(target.endpoint), window).frame
    columns = [*target.features, "label", "time"]
    if frame.empty or any(c not in frame.columns for c in columns):
        labelled = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    else:
        labels = label_values(frame["label"], target.task)
        labelled = frame.loc[labels.index, columns].assign(label=labels)
    labelled = labelled.rename(columns={"label": target.label, "time": target.time_column})
    times = pd.to_datetime(labelled[target.time_column], utc=True)
    new_rows = int((times > pd.Timestamp(since)).sum()) if since is not None else len(labelled)
    folder = deps.config.export_dir / run_id / "recent"
    write_atomic(folder / "part-0.parquet", lambda out: labelled.to_parquet(out, index=False))
    return {"path": str(folder), "rows": len(labelled), "new_rows": new_rows, "fetched_rows": len(frame),
            "window": window.to_json()}


def label_values(values: Any, task: str) -> Any:
    """The labels that arrived, as the training contract takes them: binary as 0/1 integers, regression as
    floats, multiclass as integers when every label is a number, else as class names ('android', 'web').
    Missing labels, and labels not of their task's kind, are left out (not trained on)."""
    import pandas as pd

    numeric = pd.to_numeric(values, errors="coerce")
    if task == "regression":
        return numeric.dropna().astype("float64")
    if task == "multiclass" and numeric[values.notna()].isna().any():
        return values.dropna().astype(str)
    return numeric[numeric == numeric.round()].astype("int64")
