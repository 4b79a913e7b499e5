"""The training contract through the real local runner: the team's command of each task kind, and every way
it can go wrong (it fails, writes nothing, writes something that is not an MLflow model), through the
retrain handlers up to the run record and the retrain.completed event, with the champion still serving."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.types import EndpointRef, RunState
from retrain.local_runner import LocalPipelineRunner
from retrain.registry import LocalModelRegistry
from tests.unit._retrain_data import DELAY, FEATURES, LABEL, ROOT, STATUS, TRAINING, months

DELAY_TRAINING = {"task": "regression", "train": "python train.py", "code": str(ROOT / "examples" / "delay")}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("contract-data")
    months(2, 3, 3000).to_parquet(root / "reference.parquet")  # not January: it ends in 2014 in UTC
    return root


def request(data: Path, **extra):
    return {"model_name": "flights", "features": FEATURES, "label": LABEL, "time_column": "time",
            "reference": str(data / "reference.parquet"), "rule": "reference+recent", "holdout_days": 7,
            "slices": ["origin"], "run_id": "r", **TRAINING, **extra}


def team(tmp_path: Path, body: str) -> dict[str, str]:
    """A team's training script whose body runs after the contract's arguments are parsed."""
    (tmp_path / "team").mkdir(exist_ok=True)
    (tmp_path / "team" / "train.py").write_text(
        "import argparse, sys\nfrom pathlib import Path\np = argparse.ArgumentParser()\n"
        "for o in ('--data', '--target', '--task', '--model-out'):\n    p.add_argument(o, required=True)\n"
        "args = p.parse_args()\nout = Path(args.model_out)\n" + body)
    return {"train": "python train.py", "code": str(tmp_path / "team")}


@pytest.mark.slow
@pytest.mark.parametrize(("task", "target", "training", "metrics"), [
    ("multiclass", STATUS, TRAINING, {"macro_f1", "log_loss", "accuracy"}),
    ("regression", DELAY, DELAY_TRAINING, {"mae", "rmse"}),
])
def test_a_teams_command_of_each_task_kind_is_trained_evaluated_and_registered(data, tmp_path, task, target,
                                                                               training, metrics):
    runner = LocalPipelineRunner(tmp_path / "runner")
    status = runner.wait(runner.submit(request(data, label=target, **{**training, "task": task}),
                                       idempotency_key=task), timeout=300)
    assert status.state is RunState.SUCCEEDED, status.error
    assert {k.split("/")[1] for k in status.metrics if k.count("/") == 1} == metrics | {"rows"}
    if task == "regression":
        assert 5 < status.metrics["challenger/mae"] < 60  # minutes
        assert status.metrics["challenger/rmse"] >= status.metrics["challenger/mae"]
    else:
        assert 0.3 < status.metrics["challenger/macro_f1"] < 1 and 0 < status.metrics["challenger/log_loss"] < 3
    registry = LocalModelRegistry(runner.registry_root)
    meta = registry.get("flights", "1")
    assert meta["lineage"]["task"] == task and meta["lineage"]["target"] == target
    reference = pd.read_parquet(meta["lineage"]["reference"])
    answered = reference.dropna(subset=["prediction"])
    assert len(answered) == status.metrics["holdout_rows"]
    if task == "multiclass":
        assert set(answered["prediction"]) <= {"early", "on_time", "late"} and answered["score"].between(0, 1).all()
        assert meta["lineage"]["classes"] == ["early", "late", "on_time"]
    else:
        assert answered["prediction"].dtype == float and answered["prediction"].std() > 1


BAD = {
    "fails": ("print('loading', args.data)\nprint('ValueError: column temp is all missing', file=sys.stderr)\n"
              "sys.exit(3)\n", "train exited with code 3", "ValueError: column temp is all missing"),
    "writes nothing": ("print('trained, forgot to save', file=sys.stderr)\n", "train wrote no MLflow model",
                       "nothing was written"),
    "writes a pickle": ("import pickle\n(out / 'model.pkl').write_bytes(pickle.dumps({'w': 1}))\n",
                        "train wrote no MLflow model", "no MLmodel file (found: model.pkl)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("isolation", ["fork", "process"])
def test_a_bad_training_command_fails_the_run_at_train_with_its_last_stderr_lines(data, tmp_path, case,
                                                                                  isolation):
    body, error, detail = BAD[case]
    runner = LocalPipelineRunner(tmp_path / "runner", isolation=isolation)
    status = runner.wait(runner.submit(request(data, **team(tmp_path, body)), idempotency_key=case), timeout=120)
    assert status.state is RunState.FAILED and status.failed_step == "train"
    assert error in status.error and detail in status.error
    assert status.steps["evaluate"] == "queued" and LocalModelRegistry(runner.registry_root).latest("flights") is None


@pytest.mark.slow
def test_a_failed_training_reaches_the_run_record_and_the_completed_event_and_the_champion_keeps_serving(
        tmp_path, data):
    from core.types import RunRef
    from retrain.handlers import get_run, on_retrain_event, request_retrain, track_runs

    deps = _handler_deps(tmp_path, team(tmp_path, BAD["fails"][0]))
    endpoint = EndpointRef("flights-ep")
    before = deps.deployer.current(endpoint)
    run = request_retrain(endpoint.name, "new labels", trigger={"kind": "http"}, idempotency_key="k", deps=deps)
    (requested,) = deps.publisher.of("mlops.retrain.requested.v1")
    on_retrain_event(requested, deps)
    deps.runner.wait(RunRef(**get_run(run["run_id"], deps)["run"]), timeout=120)
    assert track_runs(deps)["completed"] == 1
    record = get_run(run["run_id"], deps)
    assert record["state"] == "failed" and record["failed_step"] == "train"
    assert "ValueError: column temp is all missing" in record["error"]
    (completed,) = deps.publisher.of("mlops.retrain.completed.v1")
    assert completed.data["status"] == "failed" and "column temp is all missing" in completed.data["error"]
    assert deps.deployer.current(endpoint) == before  # the champion keeps serving


def _handler_deps(tmp_path: Path, training: dict[str, str]):
    from datetime import datetime, timezone

    from core.clock import ManualClock
    from core.state_sqlite import SqliteStateStore
    from core.telemetry_store import SqliteTelemetryStore
    from retrain.deploy import LocalDeployer
    from retrain.deps import RetrainConfig, RetrainDeps, RetrainTarget
    from retrain.policy import RetrainPolicy
    from tests.unit._retrain_data import register_model
    from tests.unit.test_retrain_handlers import FakeLabelled, ListPublisher

    registry = LocalModelRegistry(tmp_path / "registry")
    deployer = LocalDeployer(tmp_path / "endpoints.json", registry)
    deployer.start_canary(EndpointRef("flights-ep"), register_model(registry, 1, 3, run_id="v1"), 10)
    months(1, 3, 4000).to_parquet(tmp_path / "reference.parquet")
    target = RetrainTarget(endpoint="flights-ep", model_name="flights", features=FEATURES, label=LABEL,
                           reference=str(tmp_path / "reference.parquet"), **training)
    config = RetrainConfig(retrain=RetrainPolicy(min_new_labelled_rows=100), export_dir=tmp_path / "exports")
    return RetrainDeps(store=SqliteStateStore(tmp_path / "state.sqlite"), publisher=ListPublisher(),
                       runner=LocalPipelineRunner(tmp_path / "runs", registry_root=registry.root),
                       registry=registry, deployer=deployer,
                       health=SqliteTelemetryStore(tmp_path / "telemetry.sqlite"), labelled=FakeLabelled(),
                       clock=ManualClock(datetime(2013, 6, 1, tzinfo=timezone.utc)),
                       targets={"flights-ep": target}, config=config)
