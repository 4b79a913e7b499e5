"""PipelineRunner contract: the local runner on real data, and the Azure ML runner through a fake MLClient.

The fake stands in for MLClient's operations only (jobs, models); the entities it receives are real
azure-ai-ml objects built by our pipeline code.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from core.errors import ValidationFailed
from core.types import ModelVersion, RunRef, RunState
from retrain.local_driver import run_forked
from retrain.local_runner import LocalPipelineRunner, step_arguments
from retrain.registry import LocalModelRegistry
from retrain.steps import STEPS, WIRING
from tests.unit._retrain_data import FEATURES, LABEL, TRAINING, months


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("retrain-data")
    months(1, 3, 6000).to_parquet(root / "reference.parquet")
    (root / "recent").mkdir()
    months(4, 5, 5000, seed=1).to_parquet(root / "recent" / "part-0.parquet")
    return root


def request(data: Path, **extra):
    return {"model_name": "flights", "features": FEATURES, "label": LABEL, "time_column": "time",
            "reference": str(data / "reference.parquet"), "recent": str(data / "recent"), "rule": "reference+recent",
            "holdout_days": 10, "slices": ["origin"], "endpoint": "flights-ep",
            "window": {"start": "2013-04-01T00:00:00Z", "end": "2013-06-01T00:00:00Z"}, **TRAINING, **extra}


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """One real run prep -> train -> evaluate -> register, shared by the assertions below."""
    runner = LocalPipelineRunner(tmp_path_factory.mktemp("runner"))
    ref = runner.submit(request(data), idempotency_key="drift:incident-1")
    return runner, ref, runner.wait(ref, timeout=240)


@pytest.mark.slow
def test_local_run_trains_evaluates_and_registers_a_version_with_lineage(finished):
    runner, ref, status = finished
    assert status.state is RunState.SUCCEEDED, status.error
    assert status.steps == {"prep": "succeeded", "train": "succeeded", "evaluate": "succeeded",
                            "register": "succeeded"}
    assert status.model == ModelVersion("flights", "1")
    assert 0.55 < status.metrics["challenger/auc"] < 0.95
    assert status.metrics["challenger/slice/origin/JFK/rows"] > 0
    assert status.metrics["holdout_rows"] == status.metrics["challenger/rows"]
    meta = LocalModelRegistry(runner.registry_root).get("flights", "1")
    assert meta["run_id"] == ref.run_id
    lineage = meta["lineage"]
    assert lineage["data_window"] == {"start": "2013-04-01T00:00:00Z", "end": "2013-06-01T00:00:00Z"}
    assert lineage["training_window"]["start"].startswith("2013-01")
    assert lineage["holdout_window"]["end"].startswith("2013-05-31")
    assert lineage["training_rows"] > 8000
    # the monitors' reference for this version: training + holdout rows, scored out of sample (holdout only)
    reference = pd.read_parquet(lineage["reference"])
    assert Path(lineage["reference"]).is_absolute()
    assert list(reference.columns) == [*FEATURES, LABEL, "time", "prediction", "score"]
    assert len(reference) == lineage["training_rows"] + status.metrics["holdout_rows"]
    scored = reference["score"].dropna()
    assert len(scored) == status.metrics["holdout_rows"]
    assert scored.between(0, 1).all() and scored.std() > 0.01
    assert reference["time"][reference["score"].notna()].min() > reference["time"][reference["score"].isna()].max()
    model = LocalModelRegistry(runner.registry_root).load_model(ModelVersion("flights", "1"))
    proba = model.predict(reference[list(FEATURES)].head(5))  # an mlflow.pyfunc model answering probabilities
    assert proba.shape == (5, 2) and abs(proba.sum(axis=1) - 1).max() < 1e-9
    assert lineage["task"] == "binary" and lineage["features"] == FEATURES and lineage["classes"] == [0, 1]
    assert lineage["training"] == {"train": TRAINING["train"], "code": TRAINING["code"]}
    assert "train: fitted on" in runner.log(ref, "train")


@pytest.mark.slow
def test_a_resubmission_returns_the_same_run_and_starts_nothing(finished, data):
    runner, ref, _ = finished
    again = runner.submit(request(data), idempotency_key="drift:incident-1")
    assert again == ref
    assert len(list((runner.root / "runs").iterdir())) == 1
    assert LocalModelRegistry(runner.registry_root).versions("flights") == [ModelVersion("flights", "1")]


@pytest.mark.parametrize("isolation", ["fork", "process"])
def test_a_failing_step_reports_which_step_and_why(data, tmp_path, isolation):
    runner = LocalPipelineRunner(tmp_path, isolation=isolation)
    ref = runner.submit(request(data, rule="everything"), idempotency_key="bad-rule")
    status = runner.wait(ref, timeout=120)
    assert status.state is RunState.FAILED
    assert status.failed_step == "prep"
    assert "--rule 'everything'" in status.error
    assert status.steps["train"] == "queued"
    assert LocalModelRegistry(runner.registry_root).latest("flights") is None


def test_a_bad_request_is_refused_before_anything_runs(data, tmp_path):
    runner = LocalPipelineRunner(tmp_path)
    with pytest.raises(ValidationFailed, match="label"):
        runner.submit({**request(data), "label": ""}, idempotency_key="k")
    assert not (tmp_path / "runs").exists()


def test_a_run_whose_runner_process_died_is_reported_failed(tmp_path):
    runner = LocalPipelineRunner(tmp_path)
    folder = tmp_path / "runs" / "run-orphan"
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(json.dumps({"state": "running", "steps": {"prep": "running"},
                                                    "pid": 2**22 + 7}))
    status = runner.status(RunRef("run-orphan", "local"))
    assert status.state is RunState.FAILED and "exited" in status.error


def test_an_unknown_isolation_is_refused_naming_the_field(tmp_path):
    with pytest.raises(ValidationFailed, match="isolation") as caught:
        LocalPipelineRunner(tmp_path, isolation="thread")
    assert caught.value.field == "isolation"


@pytest.mark.slow
def test_each_step_is_its_own_process_and_logs_its_command_line(finished):
    runner, ref, status = finished
    for step in STEPS:
        first = runner.log(ref, step.name).splitlines()[0]
        assert first.startswith(f"{sys.executable} ") and f"{step.script or 'train.py'} " in first
    train = runner.log(ref, "train").splitlines()[0]  # the team's command, called with the contract
    assert " --data " in train and f" --target {LABEL} " in train and " --task binary " in train
    assert train.endswith("/train/model_out") and " --model-out " in train
    assert status.steps["register"] == "succeeded"


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="the driver forks a child per step")


@pytest.fixture
def scripts(tmp_path) -> Path:
    """Scripts next to a helper module they import, as the component scripts import their `_lib`."""
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "_helper.py").write_text("GREETING = 'hello'\n")
    (folder / "ok.py").write_text(
        "import os, sys\nfrom _helper import GREETING\n"
        "if __name__ == '__main__':\n    print(GREETING, sys.argv[1:], os.getcwd())\n")
    (folder / "exits.py").write_text("import sys\nprint('about to exit')\nsys.exit(int(sys.argv[1]))\n")
    (folder / "says.py").write_text("import sys\nsys.exit('bad input: --rule')\n")
    (folder / "raises.py").write_text("raise RuntimeError('boom in step')\n")
    (folder / "hangs.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    return folder


@needs_fork
def test_a_forked_step_runs_the_script_as_main_with_its_argv_folder_and_log(scripts, tmp_path):
    log = tmp_path / "ok.log"
    assert run_forked([sys.executable, str(scripts / "ok.py"), "--x", "1"], log, tmp_path, timeout=30) == 0
    header, output = log.read_text().splitlines()
    assert header == f"{sys.executable} {scripts / 'ok.py'} --x 1"
    assert output == f"hello ['--x', '1'] {tmp_path}"


@needs_fork
def test_a_forked_step_exits_with_the_scripts_code_or_1_with_the_message_or_traceback_on_stderr(scripts, tmp_path):
    def run(name, *args, log):
        return run_forked([sys.executable, str(scripts / name), *args], tmp_path / log, scripts, timeout=30)

    assert run("exits.py", "3", log="a.log") == 3
    assert "about to exit" in (tmp_path / "a.log").read_text()
    assert run("exits.py", "0", log="b.log") == 0
    assert run("says.py", log="c.log") == 1
    assert "bad input: --rule" in (tmp_path / "c.err").read_text()
    assert run("raises.py", log="d.log") == 1
    text = (tmp_path / "d.err").read_text()
    assert "Traceback" in text and "RuntimeError: boom in step" in text


@needs_fork
def test_a_step_that_is_not_a_python_script_runs_as_a_subprocess(tmp_path):
    assert run_forked(["sh", "-c", "echo out; echo err >&2; exit 4"], tmp_path / "s.log", tmp_path, timeout=30) == 4
    assert "out" in (tmp_path / "s.log").read_text() and "err" in (tmp_path / "s.err").read_text()
    assert run_forked(["no-such-program-here"], tmp_path / "n.log", tmp_path, timeout=30) == 127
    assert "cannot run no-such-program-here" in (tmp_path / "n.err").read_text()


@needs_fork
def test_a_forked_step_that_overruns_is_killed(scripts, tmp_path):
    began = time.monotonic()
    assert run_forked([sys.executable, str(scripts / "hangs.py")], tmp_path / "h.log", scripts, timeout=0.5) == -9
    assert time.monotonic() - began < 10
    assert "started" in (tmp_path / "h.log").read_text()
    assert "timed out after 0.5s" in (tmp_path / "h.err").read_text()


def blocking_request(data: Path, tmp_path: Path) -> dict:
    """A request whose prep blocks forever: its reference is a FIFO nobody writes."""
    fifo = tmp_path / "never.parquet"
    os.mkfifo(fifo)
    return request(data, reference=str(fifo))


@needs_fork
def test_a_step_that_overruns_fails_the_run_with_a_timeout(data, tmp_path):
    runner = LocalPipelineRunner(tmp_path / "runner", step_timeout_s=1.0)
    ref = runner.submit(blocking_request(data, tmp_path), idempotency_key="slow")
    status = runner.wait(ref, timeout=120)
    assert status.state is RunState.FAILED and status.failed_step == "prep"
    assert "code -9" in status.error and "timed out after 1.0s" in status.error
    assert status.steps["train"] == "queued"


@needs_fork
def test_a_run_whose_driver_is_killed_is_reported_failed_and_its_step_dies_too(data, tmp_path):
    import psutil

    runner = LocalPipelineRunner(tmp_path / "runner")
    ref = runner.submit(blocking_request(data, tmp_path), idempotency_key="killed")
    status_file = runner.root / "runs" / ref.run_id / "status.json"
    deadline, steps = time.monotonic() + 120, []
    while not steps and time.monotonic() < deadline:
        time.sleep(0.05)
        pid = json.loads(status_file.read_text())["pid"]
        steps = psutil.Process(pid).children() if pid != os.getpid() else []
    if pid != os.getpid():  # the driver, whatever happened: a blocked run must not outlive the test
        os.kill(pid, signal.SIGKILL)
    assert len(steps) == 1, "prep never started"
    status = runner.wait(ref, timeout=30)
    assert status.state is RunState.FAILED and "exited" in status.error
    if sys.platform.startswith("linux"):
        psutil.wait_procs(steps, timeout=10)
        assert not steps[0].is_running()


# --- Azure ML: the pipeline definition and the runner through MLClient's operations --------------------------

AZURE_TRAINING = {"task": "binary", "train": "python train.py", "code": str(Path(TRAINING["code"])),
                  "environment": "azureml:flights-train:3"}


def arguments(**training):
    args = step_arguments({"model_name": "flights", "features": FEATURES, "label": LABEL,
                           "reference": "azureml:flights-reference:1", "recent": "azureml://datastores/x/paths/r/",
                           "slices": ["origin"], "run_id": "r1", **(training or AZURE_TRAINING)}, Path("unused"))
    args.pop("registry")
    return args


def test_pipeline_definition_validates_offline_and_wires_each_step_to_the_previous_outputs():
    from retrain.pipeline import build_pipeline_job

    job = build_pipeline_job(arguments(), compute="cpu-cluster", name="mlops-retrain-abc")
    result = job._validate()
    assert result.passed, result.error_messages
    assert set(job.jobs) == {s.name for s in STEPS}
    for (step, port), (source, output) in WIRING.items():
        binding = job.jobs[step].inputs[port]._data
        assert str(binding) == f"${{{{parent.jobs.{source}.outputs.{output}}}}}", (step, port, binding)
    assert str(job.jobs["prep"].inputs["reference"]._data) == "${{parent.inputs.reference}}"
    assert job.inputs["reference"].path == "azureml:flights-reference:1"
    assert str(job.jobs["evaluate"].inputs["champion"]._data) == "${{parent.inputs.champion}}"
    with_champion = build_pipeline_job({**arguments(), "champion": "azureml:flights:3"})
    assert with_champion.inputs["champion"].path == "azureml:flights:3"
    assert "--features '${{inputs.features}}'" in job.jobs["evaluate"].component.command
    assert set(job.outputs) == {"metrics", "registered", "reference", "training"}
    # the team's command as a command component: their code folder and environment, the contract's options
    team = job.jobs["train"].component
    assert team.command == ("python train.py --data ${{inputs.data}} --target '${{inputs.target}}' "
                            "--task '${{inputs.task}}' --model-out ${{outputs.model_out}}")
    assert Path(team.code) == Path(TRAINING["code"]) and team.environment == "azureml:flights-train:3"
    assert str(job.jobs["train"].inputs["target"]._data) == "${{parent.inputs.target}}"
    assert job.inputs["target"]._data == LABEL and job.inputs["task"]._data == "binary"


def test_a_train_command_without_an_environment_is_refused_for_azure_ml():
    from retrain.pipeline import build_pipeline_job

    with pytest.raises(ValidationFailed, match="environment") as caught:
        build_pipeline_job(arguments(task="binary", train="python train.py"))
    assert caught.value.field == "environment"


TEAM_COMPONENT = """$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
name: flights_train
version: "4"
type: command
inputs:
  data: {type: uri_folder}
  target: {type: string}
  task: {type: string}
outputs:
  model_out: {type: mlflow_model}
code: .
environment: azureml:flights-train:3
command: >-
  python train.py --data ${{inputs.data}} --target ${{inputs.target}} --task ${{inputs.task}}
  --model-out ${{outputs.model_out}}
"""

TEAM_PIPELINE_JOB = """$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
display_name: team-training
inputs:  # the values the team runs it with on its own; the product binds its own
  data: {type: uri_folder, path: azureml:flights-training-data:1}
  target: delayed
  task: binary
outputs:
  model_out: {type: mlflow_model}
jobs:
  fit:
    type: command
    code: .
    environment: azureml:flights-train:3
    command: >-
      python train.py --data ${{inputs.data}} --target ${{inputs.target}} --task ${{inputs.task}}
      --model-out ${{outputs.model_out}}
    inputs:
      data: ${{parent.inputs.data}}
      target: ${{parent.inputs.target}}
      task: ${{parent.inputs.task}}
    outputs:
      model_out: ${{parent.outputs.model_out}}
"""


@pytest.mark.parametrize("text", [TEAM_COMPONENT, TEAM_PIPELINE_JOB], ids=["component", "pipeline-job"])
def test_a_teams_component_or_pipeline_job_yaml_is_bound_to_the_contracts_inputs_and_output(tmp_path, text):
    from retrain.pipeline import build_pipeline_job

    (tmp_path / "train.py").write_text("print('the team trains here')\n")
    (tmp_path / "train.yml").write_text(text)
    job = build_pipeline_job(arguments(task="binary", train_job=str(tmp_path / "train.yml")), compute="cpu")
    result = job._validate()
    assert result.passed, result.error_messages
    node = job.jobs["train"]
    assert {k: str(node.inputs[k]._data) for k in ("data", "target", "task")} == {
        "data": "${{parent.jobs.prep.outputs.out_train}}", "target": "${{parent.inputs.target}}",
        "task": "${{parent.inputs.task}}"}
    assert str(job.jobs["evaluate"].inputs["model"]._data) == "${{parent.jobs.train.outputs.model_out}}"


def test_a_training_component_without_the_contracts_ports_is_refused(tmp_path):
    from retrain.pipeline import build_pipeline_job

    (tmp_path / "train.yml").write_text(TEAM_COMPONENT.replace("  task: {type: string}\n", ""))
    with pytest.raises(ValidationFailed, match="task"):
        build_pipeline_job(arguments(task="binary", train_job=str(tmp_path / "train.yml")))


def test_a_registered_training_component_is_fetched_from_the_workspace(tmp_path):
    from azure.ai.ml import load_component

    from retrain.pipeline import build_pipeline_job

    (tmp_path / "train.yml").write_text(TEAM_COMPONENT)
    registered = load_component(source=tmp_path / "train.yml")
    asked = []

    class Components:
        def get(self, name, version=None, label=None):
            asked.append((name, version, label))
            return registered

    client = Obj(components=Components())
    job = build_pipeline_job(arguments(task="binary", train_component="azureml:flights_train:4"), ml_client=client,
                             compute="cpu")
    assert job._validate().passed and asked == [("flights_train", "4", None)]
    build_pipeline_job(arguments(task="binary", train_component="azureml:flights_train@latest"), ml_client=client)
    assert asked[-1] == ("flights_train", None, "latest")


def test_pipeline_refuses_text_that_the_step_command_cannot_carry():
    from retrain.pipeline import build_pipeline_job

    with pytest.raises(ValidationFailed, match="label"):
        build_pipeline_job({**arguments(), "label": "it's"})


class Obj:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class FakeJobs:
    def __init__(self, root: Path):
        self.root, self.jobs, self.created, self.children = root, {}, [], {}

    def get(self, name):
        from azure.core.exceptions import ResourceNotFoundError

        if name not in self.jobs:
            raise ResourceNotFoundError(f"job {name} not found")
        return self.jobs[name]

    def create_or_update(self, job, **kwargs):
        self.created.append((job, kwargs))
        self.jobs[job.name] = Obj(name=job.name, status="Queued", tags=job.tags, studio_url="https://ml/x")
        return self.jobs[job.name]

    def list(self, parent_job_name=None):
        return self.children.get(parent_job_name, [])

    def download(self, name, output_name, download_path):
        folder = Path(download_path) / "named-outputs" / output_name
        folder.mkdir(parents=True, exist_ok=True)
        if output_name == "metrics":
            (folder / "metrics.json").write_text(json.dumps({"flat": {"challenger/auc": 0.71}}))
        else:
            (folder / "lineage.json").write_text(json.dumps({"run_id": "r1", "parent": "flights:1"}))
            (folder / "metrics.json").write_text(json.dumps({"challenger/auc": 0.71}))


class FakeModels:
    def __init__(self):
        self.registered = []

    def list(self, name):
        return [m for m in self.registered if m.name == name]

    def create_or_update(self, model):
        model.version = str(len(self.list(model.name)) + 1)
        self.registered.append(model)
        return model


class FakeData:
    """`ml_client.data` at the edge: versions of real Data entities, listed by name."""

    def __init__(self):
        self.created = []

    def list(self, name):
        return [d for d in self.created if d.name == name]

    def create_or_update(self, data):
        assert data.version not in {d.version for d in self.list(data.name)}, "data versions are immutable"
        self.created.append(data)
        return data


@pytest.fixture
def ml_client(tmp_path):
    return Obj(jobs=FakeJobs(tmp_path), models=FakeModels(), data=FakeData())


def test_azureml_runner_submits_a_real_pipeline_job_once_per_idempotency_key(ml_client):
    from azure.ai.ml.entities import PipelineJob

    from retrain.azureml_runner import AzureMLPipelineRunner, azureml_job_name

    runner = AzureMLPipelineRunner(ml_client, compute="cpu-cluster")
    req = {"model_name": "flights", "features": FEATURES, "label": LABEL, "reference": "azureml:ref:1",
           "run_id": "r1", **AZURE_TRAINING}
    first = runner.submit(req, idempotency_key="http:abc")
    second = runner.submit(req, idempotency_key="http:abc")
    assert first == second == RunRef("r1", "azureml", azureml_job_name("http:abc"))
    assert len(ml_client.jobs.created) == 1
    job, kwargs = ml_client.jobs.created[0]
    assert isinstance(job, PipelineJob) and job.name == azureml_job_name("http:abc")
    assert job._validate().passed and kwargs == {"experiment_name": "mlops-retrain"}
    assert job.tags["model_name"] == "flights"


def test_azureml_runner_maps_states_reports_the_failed_step_and_registers_on_success(ml_client):
    from azure.ai.ml.entities import Model

    from retrain.azureml_runner import AzureMLPipelineRunner

    runner = AzureMLPipelineRunner(ml_client)
    ref = runner.submit({"model_name": "flights", "features": FEATURES, "label": LABEL,
                         "reference": "azureml:ref:1", "run_id": "r1", **AZURE_TRAINING}, idempotency_key="k")
    name = ref.external_id
    assert runner.status(ref).state is RunState.QUEUED
    ml_client.jobs.jobs[name].status = "Running"
    ml_client.jobs.children[name] = [Obj(name="a", display_name="prep", status="Completed"),
                                     Obj(name="b", display_name="train", status="Running")]
    running = runner.status(ref)
    assert running.state is RunState.RUNNING and running.steps == {"prep": "succeeded", "train": "running"}
    ml_client.jobs.jobs[name].status = "Completed"
    done = runner.status(ref)
    assert done.state is RunState.SUCCEEDED and done.model == ModelVersion("flights", "1")
    assert done.metrics == {"challenger/auc": 0.71}
    (model,) = ml_client.models.registered
    assert isinstance(model, Model) and model.path == f"azureml://jobs/{name}/outputs/registered/paths/model/"
    assert model.type == "mlflow_model"
    assert model.tags["run_id"] == "r1" and json.loads(model.properties["lineage"])["parent"] == "flights:1"
    lineage = json.loads(model.properties["lineage"])
    assert (lineage["training_data"], lineage["reference"]) == ("azureml:flights-training:1",
                                                                "azureml:flights-reference:1")
    assets = {d.name: d for d in ml_client.data.created}
    assert assets["flights-reference"].path == f"azureml://jobs/{name}/outputs/reference/"
    assert assets["flights-training"].path == f"azureml://jobs/{name}/outputs/training/"
    assert assets["flights-reference"].tags["mlops-fingerprint"] != assets["flights-training"].tags["mlops-fingerprint"]
    runner._finished.clear()
    assert runner.status(ref).model == ModelVersion("flights", "1")  # registering again finds the same version
    assert len(ml_client.models.registered) == 1 and len(ml_client.data.created) == 2  # and the same data

    failing = runner.submit({"model_name": "flights", "features": FEATURES, "label": LABEL,
                             "reference": "azureml:ref:1", "run_id": "r2", **AZURE_TRAINING}, idempotency_key="k2")
    ml_client.jobs.jobs[failing.external_id].status = "Failed"
    ml_client.jobs.children[failing.external_id] = [Obj(name="c", display_name="prep", status="Completed"),
                                                    Obj(name="d", display_name="train", status="Failed")]
    failed = runner.status(failing)
    assert failed.state is RunState.FAILED and failed.failed_step == "train" and "train" in failed.error


@needs_fork
def test_runs_are_forked_from_one_server_that_imported_the_libraries_once(data, tmp_path):
    import psutil

    runner, refs = LocalPipelineRunner(tmp_path / "runner"), []
    for i in range(2):
        (tmp_path / str(i)).mkdir()
        refs.append(runner.submit(blocking_request(data, tmp_path / str(i)), idempotency_key=f"blocked-{i}"))
    drivers, deadline = [], time.monotonic() + 120
    while len(drivers) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = [json.loads((runner.root / "runs" / r.run_id / "status.json").read_text())["pid"] for r in refs]
        drivers = [psutil.Process(p) for p in pids if p != os.getpid()]
    try:
        assert len(drivers) == 2
        server = {d.ppid() for d in drivers}
        assert len(server) == 1 and os.getpid() not in server  # one server, the parent of both drivers
        assert "--serve" in psutil.Process(server.pop()).cmdline()
    finally:
        for driver in drivers:
            driver.kill()
    for ref in refs:
        assert runner.wait(ref, timeout=30).state is RunState.FAILED
