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
        labelled = frame[columns][pd.to_numeric(frame["label"], errors="coerce").notna()].copy()
        labelled["label"] = pd.to_numeric(labelled["label"]).astype("int64")
    labelled = labelled.rename(columns={"label": target.label, "time": target.time_column})
    times = pd.to_datetime(labelled[target.time_column], utc=True)
    new_rows = int((times > pd.Timestamp(since)).sum()) if since is not None else len(labelled)
    folder = deps.config.export_dir / run_id / "recent"
    write_atomic(folder / "part-0.parquet", lambda out: labelled.to_parquet(out, index=False))
    return {"path": str(folder), "rows": len(labelled), "new_rows": new_rows, "fetched_rows": len(frame),
            "window": window.to_json()}
