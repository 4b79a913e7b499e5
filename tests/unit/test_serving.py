"""Local deployments are Azure ML's inference server processes: an MLflow model without a scoring script, and a
team's score.py that logs with the product's logger and Azure ML's data collector. Real processes on loopback."""
from __future__ import annotations

import json
import textwrap
from datetime import datetime, timedelta, timezone

import pytest

from core.clock import ManualClock
from core.types import ModelVersion
from retrain.predictions import read_predictions
from retrain.registry import LocalModelRegistry
from retrain.serving import DeploymentSpec, DeploymentUnavailable, ServerPool, default_environment
from tests.unit._retrain_data import FEATURES, months, register_model

START = datetime(2013, 6, 1, 12, tzinfo=timezone.utc)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    registry = LocalModelRegistry(tmp_path_factory.mktemp("registry"))
    register_model(registry, 1, 3, seed=0, run_id="a")
    return registry


def body(rows, ids):
    columns = list(FEATURES)
    data = [[None if v != v else v for v in row] for row in rows[columns].astype(object).values.tolist()]
    return json.dumps({"input_data": {"columns": columns, "data": data}, "request_ids": ids}).encode()


def test_an_mlflow_model_without_a_scoring_script_is_served_on_loopback(registry, tmp_path):
    import psutil

    from retrain.components._lib import feature_frame

    pool = ServerPool("flights-ep", registry, ManualClock(START), work_dir=tmp_path / "serving")
    try:
        pool.sync({"blue": DeploymentSpec(model="flights:1")})
        server = pool.server("blue")
        rows = months(6, 6, 40, seed=3)
        status, answer = server.score(body(rows, [f"r{i}" for i in range(len(rows))]))
        assert status == 200
        expected = _local_probabilities(registry, feature_frame(rows, FEATURES))
        assert [round(p[1], 9) for p in answer] == [round(p, 9) for p in expected]
        assert [x[0] for x in read_predictions(answer, len(rows), server.classes)] == [int(p >= 0.5) for p in expected]
        assert server.columns and set(server.columns) <= set(FEATURES)  # the signature's, else the lineage's
        listening = {c.laddr.ip for p in psutil.Process(server._proc.pid).children(recursive=True) + [
            psutil.Process(server._proc.pid)] for c in p.net_connections() if c.status == "LISTEN"}
        assert listening == {"127.0.0.1"}
        pid = server._proc.pid
        pool.sync({})  # the deployment is removed: its server stops
        server._proc.wait(30)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        pool.close()


def _local_probabilities(registry, frame):
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(registry.model_path(ModelVersion("flights", "1"))))
    return model.predict(frame)[:, 1].tolist()


SCORE_PY = '''
    import json, os, time
    import mlflow.pyfunc
    import pandas as pd
    from azureml.ai.monitoring import Collector
    from core.telemetry import RequestLogger

    def init():
        global model, inputs, outputs, logger
        model = mlflow.pyfunc.load_model(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model"))
        inputs, outputs = Collector(name="model_inputs"), Collector(name="model_outputs")
        logger = RequestLogger.from_env(batch_size=1)

    def run(raw_data):
        doc = json.loads(raw_data)
        frame = pd.DataFrame(doc["input_data"]["data"], columns=doc["input_data"]["columns"])
        frame = frame.astype({c: "float64" for c in ("hour", "distance", "temp", "wind_speed", "precip", "visib")})
        started = time.perf_counter()
        context = inputs.collect(frame.assign(correlationid=doc["request_ids"]))
        scores = model.predict(frame)[:, 1]
        outputs.collect(pd.DataFrame({"score": scores, "correlationid": doc["request_ids"]}), context)
        for rid, row, score in zip(doc["request_ids"], frame.to_dict(orient="records"), scores):
            logger.log(inputs=row, prediction=int(score >= 0.5), score=float(score), request_id=rid,
                       latency_ms=(time.perf_counter() - started) * 1000)
        logger.flush()
        return {"predictions": [int(s >= 0.5) for s in scores], "scores": scores.tolist()}
'''


def test_a_team_score_py_logs_with_the_product_logger_and_azure_mls_data_collector(registry, tmp_path):
    from core.telemetry_store import SqliteTelemetryStore

    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text(textwrap.dedent(SCORE_PY))
    data_dir = tmp_path / "data"
    spec = DeploymentSpec(model="flights:1", code=str(code), scoring_script="score.py",
                          environment_variables={"MLOPS_DATA_DIR": str(data_dir)},
                          data_collector={"collections": {"model_inputs": {"enabled": "true"},
                                                          "model_outputs": {"enabled": "true"}}})
    clock = ManualClock(START)
    pool = ServerPool("flights-ep", registry, clock, work_dir=data_dir / "serving")
    try:
        pool.sync({"green": spec})
        server = pool.server("green")
        rows = months(7, 7, 25, seed=5)
        ids = [f"g{i}" for i in range(len(rows))]
        status, answer = server.score(body(rows, ids))
        assert status == 200
        pairs = read_predictions(answer, len(rows))
        assert all(0.0 <= score <= 1.0 and prediction in (0, 1) for prediction, score in pairs)
        store = SqliteTelemetryStore(data_dir / "telemetry.sqlite")
        logged = store.read_window("flights-ep", START, datetime(2100, 1, 1, tzinfo=timezone.utc))  # real time
        assert sorted(logged.column("request_id").to_pylist()) == sorted(ids)
        assert set(logged.column("deployment").to_pylist()) == {"green"}  # from DEPLOYMENT_NAME, set as in Azure
        assert set(logged.column("model_version").to_pylist()) == {"flights:1"}
        lines = _collected(data_dir, "model_inputs") + _collected(data_dir, "model_outputs")
        by_type = {line["type"]: line for line in lines}
        assert set(by_type) == {"azureml.inference.model_inputs", "azureml.inference.model_outputs"}
        inputs = by_type["azureml.inference.model_inputs"]
        assert [r["correlationid"] for r in inputs["data"]] == ids
        assert inputs["data"][0]["carrier"] == rows["carrier"][0]
        assert inputs["time"] == "2013-06-01T12:00:00Z"  # filed by the endpoint's clock
        assert inputs["collectdatatype"] == "pandas.core.frame.DataFrame"
        assert by_type["azureml.inference.model_outputs"]["correlationid"] == inputs["correlationid"]
        # ...and the product's data collector source reads them back, as it reads Azure's blob store
        from core.types import EndpointRef, Window
        from monitors.telemetry.blobfiles import FolderFiles
        from monitors.telemetry.datacollector import DataCollectorTelemetrySource, Layout

        source = DataCollectorTelemetrySource(FolderFiles(data_dir), Layout(id_column="correlationid"),
                                              features=FEATURES)
        batch = source.fetch(EndpointRef("flights-ep"), Window(START, START + timedelta(hours=1)))
        assert sorted(batch.frame["request_id"]) == sorted(ids)
        assert list(batch.frame.sort_values("request_id")["carrier"]) == list(
            rows.assign(request_id=ids).sort_values("request_id")["carrier"])
    finally:
        pool.close()


def _collected(data_dir, collection, timeout_s=20.0):
    """The JSON lines the agent wrote for one collection (the collector sends from a background thread)."""
    import time

    folder = data_dir / "modelDataCollector" / "flights-ep" / "green" / collection / "2013" / "06" / "01" / "12"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        files = sorted(folder.glob("*.jsonl")) if folder.exists() else []
        if files:
            return [json.loads(line) for f in files for line in f.read_text().splitlines()]
        time.sleep(0.1)
    raise AssertionError(f"nothing collected under {folder}")


def test_a_deployment_that_cannot_start_fails_alone_with_its_reason(registry, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text("def init():\n    raise RuntimeError('no such feature store')\n\n"
                                   "def run(raw_data):\n    return []\n")
    pool = ServerPool("flights-ep", registry, ManualClock(START), work_dir=tmp_path / "serving")
    try:
        pool.sync({"blue": DeploymentSpec(model="flights:1"), "green": DeploymentSpec(
            model="flights:1", code=str(code), scoring_script="score.py"), "red": DeploymentSpec(model="flights:9")})
        with pytest.raises(DeploymentUnavailable, match="no such feature store"):
            pool.server("green")
        with pytest.raises(DeploymentUnavailable, match="flights:9"):
            pool.server("red")
        assert pool.server("blue").score(body(months(6, 6, 3, seed=1), ["a", "b", "c"]))[0] == 200
        assert pool.status() == {"blue": "running", "green": "exited", "red": "failed"}
    finally:
        pool.close()


def test_the_serving_environment_is_pinned_like_the_app():
    """Models trained in the app's environment load in the serving one: the shared libraries agree."""
    from pathlib import Path

    def pins(name):
        lines = (Path(__file__).resolve().parents[2] / name).read_text().splitlines()
        return dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))

    # The app's environment is requirements.txt plus the text stack (the text classifier's onnxruntime/tokenizers).
    app, serve = pins("requirements.txt") | pins("requirements-text.txt"), pins("requirements-serve.txt")
    model_libraries = set(serve) - {"azureml-inference-server-http", "azureml-ai-monitoring",
                                    "azure-monitor-opentelemetry-exporter", "pydantic"}  # the server's own
    assert {"numpy", "pandas", "scikit-learn"} <= model_libraries
    assert {name: serve[name] for name in model_libraries} == {name: app.get(name) for name in model_libraries}
    assert default_environment().endswith((".venv-serve/bin/python", "python3", "python"))


def test_a_teams_local_deployment_file_is_the_first_deployment_and_canaries_clone_it(tmp_path):
    from core.errors import ValidationFailed
    from core.types import EndpointRef
    from retrain.deploy import LocalDeployer

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "score.py").write_text("def init():\n    pass\n\ndef run(raw_data):\n    return []\n")
    (tmp_path / "deployment.yaml").write_text(
        "code: app\nscoring_script: score.py\nenvironment_variables: {FEATURE_STORE: off}\n"
        "data_collector: {collections: {model_inputs: {enabled: 'true'}}}\nrequest_timeout_ms: 2000\n")
    template = DeploymentSpec.from_file(tmp_path / "deployment.yaml")
    assert template.code == str((tmp_path / "app").resolve()) and template.request_timeout_ms == 2000
    deployer = LocalDeployer(tmp_path / "endpoints.json", template=template)
    deployer.start_canary(EndpointRef("ep"), ModelVersion("m", "1"), 10)
    deployer.start_canary(EndpointRef("ep"), ModelVersion("m", "2"), 10)
    assert deployer.deployments(EndpointRef("ep")) == {"blue": template.with_model("m:1"),
                                                       "green": template.with_model("m:2")}
    (tmp_path / "bad.yaml").write_text("code: app\nscoring_script: missing.py\n")
    with pytest.raises(ValidationFailed, match="no scoring script"):
        DeploymentSpec.from_file(tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("scoring_scrpt: score.py\n")
    with pytest.raises(ValidationFailed, match="scoring_scrpt"):
        DeploymentSpec.from_file(tmp_path / "typo.yaml")


def test_a_deployment_whose_environment_does_not_exist_fails_alone(registry, tmp_path):
    pool = ServerPool("flights-ep", registry, ManualClock(START), work_dir=tmp_path / "serving")
    try:
        pool.sync({"blue": DeploymentSpec(model="flights:1", environment=str(tmp_path / "no-such-python"))})
        with pytest.raises(DeploymentUnavailable, match="cannot start"):
            pool.server("blue")
        assert pool.status() == {"blue": "failed"}
    finally:
        pool.close()
