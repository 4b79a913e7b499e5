"""The scoring script of a no-code MLflow deployment, run by Azure ML's inference server (`azmlinfsrv`).

Azure ML generates the equivalent for an `mlflow_model` deployed without a scoring script, and this one keeps its
contract: the model is loaded with `mlflow.pyfunc` from AZUREML_MODEL_DIR/MLFLOW_MODEL_FOLDER; the body is
{"input_data": {"columns": [...], "index": [...], "data": [[...]]}, "params": {...}} (pandas "split" orient, index
optional); the answer is the model's predictions as JSON (a list: labels, values, or one list of class
probabilities per row); inputs and outputs go to the deployment's data collector (`azureml-ai-monitoring`) when it
has one. An optional "request_ids" list (one per row) is logged as the `correlationid` column, so collected rows
can be joined to labels that arrive later. It runs in the serving environment and imports nothing of this product.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

log = logging.getLogger("mlflow_score")
model: Any = None
collectors: dict[str, Any] = {}


def init() -> None:
    global model
    import mlflow.pyfunc

    path = os.path.join(os.environ["AZUREML_MODEL_DIR"], os.environ.get("MLFLOW_MODEL_FOLDER", ""))
    model = mlflow.pyfunc.load_model(path)
    collectors.update(_collectors())


def _collectors() -> dict[str, Any]:
    """The collections the deployment enables; without a data collector there are none."""
    if not (os.environ.get("AZUREML_MDC_CONFIG_PATH") or os.environ.get("AZUREML_MDC_ENABLED")):
        return {}
    from azureml.ai.monitoring import Collector

    found = {}
    for name in ("model_inputs", "model_outputs"):
        try:  # without on_error, the collector raises at construction when its collection is not enabled
            found[name] = Collector(name=name)
        except Exception as exc:  # the SDK raises a bare Exception: a collection left out of the config
            log.info("collection %s is not collected: %s", name, exc)
    return found


def run(raw_data: str) -> Any:
    import pandas as pd

    doc = json.loads(raw_data)
    data = doc.get("input_data") if isinstance(doc, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("columns"), list) or not isinstance(
            data.get("data"), list):
        raise ValueError('the body must be {"input_data": {"columns": [...], "data": [[...], ...]}}')
    frame = _conform(pd.DataFrame(data["data"], columns=data["columns"], index=data.get("index")))
    context = _collect("model_inputs", _with_ids(frame, doc.get("request_ids")))
    params = doc.get("params")
    result = model.predict(frame, params=params) if params else model.predict(frame)
    _collect("model_outputs", _with_ids(pd.DataFrame(_plain(result)), doc.get("request_ids")), context)
    return _plain(result)


def _conform(frame: Any) -> Any:
    """Columns as the signature types them: JSON numbers as floats (JSON gives 5 for 5.0, and MLflow will not
    cast int64 to float64 on its own), values of string columns as text (missing stays missing). Azure ML's
    script does the same by deserializing with the signature's sample."""
    import pandas as pd

    schema = model.metadata.get_input_schema() if model.metadata else None
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return frame
    for spec in schema.inputs:
        kind = getattr(spec.type, "name", "")
        if spec.name not in frame.columns:
            continue
        if kind in ("double", "float"):
            frame[spec.name] = pd.to_numeric(frame[spec.name], errors="coerce").astype("float64")
        elif kind == "string":
            column = frame[spec.name].astype("object")
            frame[spec.name] = column.where(column.isna(), column.map(str)).where(column.notna(), None)
    return frame


def _with_ids(frame: Any, ids: Any) -> Any:
    if isinstance(ids, list) and len(ids) == len(frame):
        return frame.assign(correlationid=ids)
    return frame


def _collect(name: str, frame: Any, context: Any = None) -> Any:
    """Collecting never fails scoring: a full queue or a stopped agent loses that payload, with a warning."""
    collector = collectors.get(name)
    if collector is None:
        return context
    try:
        return collector.collect(frame, context)
    except Exception as exc:  # the SDK reports its failures as bare Exceptions
        log.warning("data collector: %s payload lost: %s", name, exc)
        return context


def _plain(result: Any) -> Any:
    """numpy arrays, pandas Series and DataFrames as plain lists (a DataFrame as records, as Azure ML answers)."""
    if hasattr(result, "to_dict") and hasattr(result, "columns"):
        return result.to_dict(orient="records")
    if hasattr(result, "tolist"):
        return result.tolist()
    return result
