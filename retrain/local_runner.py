"""Runs the retraining pipeline on this machine: the same component scripts and the team's training
command, each in its own process, in order.

Layout: <root>/runs/<run_id>/request.json, status.json (rewritten atomically after every change, so
another process can read it), <step>.log (stdout) and <step>.err (stderr), <step>/<output>/ folders, and
driver.log (isolation "fork").

The team's command (`train`, e.g. "python train.py") runs in its code folder (`code`); a leading
`python` means this runner's interpreter, as an Azure ML environment's `python` is that environment's.

Isolation "fork" (the default where os.fork exists) starts one fork server per runner
(`retrain.local_driver --serve`) that imports pandas/pyarrow/sklearn/mlflow once and forks a driver per
run, which forks a child per step that runs a Python script (or `python -m module`) as `__main__`;
importing those libraries took ~5-8 s of every step, and then of every run. Any other command runs as a
subprocess. Isolation "process" runs every step as a new process, as Azure ML does.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from core.errors import NotFound, ValidationFailed
from core.files import write_json
from core.types import ModelVersion, RunRef, RunState, RunStatus
from retrain.steps import COMPONENTS_DIR, STEPS, TRAIN, WIRING, Step

REPO_ROOT = Path(__file__).resolve().parent.parent
BACKEND = "local"
REQUIRED = ("model_name", "features", "label", "reference")
TRAINING = ("train", "train_component", "train_job")  # one of them names the team's training step
ISOLATIONS = ("fork", "process")
TASKS = ("binary", "multiclass", "regression")
PYTHONS = ("python", "python3", "python3.11")

# Runs one step: (argv: the program and its arguments, stdout log, working folder) -> exit code. The
# step's stderr goes to the log's `.err` sibling.
StepRunner = Callable[[list[str], Path, Path], int]


def local_run_id(idempotency_key: str) -> str:
    return "run-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]


def step_arguments(request: Mapping[str, Any], registry: Path) -> dict[str, Any]:
    """The pipeline's parameters from a retrain request (the values the Azure pipeline binds too)."""
    missing = [k for k in REQUIRED if not request.get(k)]
    if missing:
        raise ValidationFailed(f"retrain request is missing {', '.join(missing)}", field=missing[0])
    if not any(request.get(k) for k in TRAINING):
        raise ValidationFailed(f"retrain request names no training step (one of {', '.join(TRAINING)})",
                               field="train")
    task = request.get("task", "binary")
    if task not in TASKS:
        raise ValidationFailed(f"task {task!r} is not one of {', '.join(TASKS)}", field="task")
    lineage = {"run_id": request.get("run_id"), "endpoint": request.get("endpoint"),
               "parent": request.get("parent"), "data_window": request.get("window"),
               "requested_at": request.get("requested_at"),
               "training": {k: request.get(k) for k in (*TRAINING, "code", "environment") if request.get(k)}}
    return {"reference": request["reference"], "recent": request.get("recent"),
            "rule": request.get("rule", "reference+recent"), "features": json.dumps(request["features"]),
            "label": request["label"], "target": request["label"], "task": task,
            "time_column": request.get("time_column", "time"), "holdout_days": int(request.get("holdout_days", 7)),
            "champion": request.get("champion"), "slices": json.dumps(list(request.get("slices", []))),
            "name": request["model_name"], "lineage": json.dumps(lineage), "registry": str(registry),
            "train": request.get("train"), "code": str(request.get("code") or os.getcwd()),
            **{k: request.get(k) for k in ("environment", "train_component", "train_job")}}


class LocalPipelineRunner:
    backend = BACKEND

    def __init__(self, root: str | Path, python: str = sys.executable, registry_root: str | Path | None = None,
                 step_timeout_s: float = 1800.0, threads: int = 1, isolation: str | None = None) -> None:
        self.root = Path(root)
        self.python = python
        self.registry_root = Path(registry_root) if registry_root else self.root / "registry"
        self.step_timeout_s = step_timeout_s
        # OpenMP threads per step. One by default: on a small shared machine, gradient boosting with
        # spinning OpenMP threads was measured 15x slower (13 s vs 0.8 s for 3000 rows on 2 busy cores).
        self.threads = threads
        self.isolation = isolation or ("fork" if hasattr(os, "fork") else "process")
        if self.isolation not in ISOLATIONS or (self.isolation == "fork" and not hasattr(os, "fork")):
            raise ValidationFailed(f"isolation must be one of {ISOLATIONS} (fork needs os.fork), "
                                   f"got {isolation!r}", field="isolation")
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._server: _ForkServer | None = None

    def submit(self, request: Mapping[str, Any], *, idempotency_key: str) -> RunRef:
        """Start a run; a resubmission with the same key returns the same run and starts nothing."""
        if not idempotency_key:
            raise ValidationFailed("idempotency_key must be non-empty", field="idempotency_key")
        run_id = local_run_id(idempotency_key)
        request = {**request, "run_id": request.get("run_id") or run_id}
        arguments = {**step_arguments(request, self.registry_root), "python": self.python}
        if not arguments["train"]:
            raise ValidationFailed("the local runner runs a `train` command; train_component and train_job "
                                   "run in Azure ML only", field="train")
        folder = self.root / "runs" / run_id
        try:
            folder.mkdir(parents=True)  # atomic: exactly one submitter owns the run
        except FileExistsError:
            return RunRef(run_id, BACKEND, run_id)
        write_json(folder / "request.json", {"request": dict(request), "idempotency_key": idempotency_key},
                   default=str)
        save_status(folder, {"state": RunState.QUEUED.value, "steps": {s.name: "queued" for s in STEPS},
                             "pid": os.getpid()})
        target = self._drive if self.isolation == "fork" else self._execute
        thread = threading.Thread(target=target, args=(folder, arguments), name=f"run {run_id}", daemon=True)
        self._threads[run_id] = thread
        thread.start()
        return RunRef(run_id, BACKEND, run_id)

    def status(self, run: RunRef) -> RunStatus:
        doc = load_status(self.root / "runs" / run.run_id)
        state = RunState(doc["state"])
        if not state.terminal and not _alive(doc.get("pid")):
            state, doc = RunState.FAILED, {**doc, "error": "the runner process exited before the run finished"}
        model = ModelVersion(**doc["model"]) if doc.get("model") else None
        return RunStatus(state=state, failed_step=doc.get("failed_step"), error=doc.get("error"),
                         metrics=doc.get("metrics", {}), model=model, steps=doc.get("steps", {}))

    def wait(self, run: RunRef, timeout: float = 300.0) -> RunStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(run)
            if status.state.terminal:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run.run_id} still {status.state.value} after {timeout}s")
            time.sleep(0.05)

    def log(self, run: RunRef, step: str) -> str:
        """The step's output: its stdout log, then its stderr."""
        folder = self.root / "runs" / run.run_id
        return "".join(p.read_text() for p in (folder / f"{step}.log", folder / f"{step}.err") if p.exists())

    def _execute(self, folder: Path, arguments: dict[str, Any]) -> None:
        execute(folder, arguments, self._run_step)

    def _drive(self, folder: Path, arguments: dict[str, Any]) -> None:
        """Have the fork server start the run's driver, then wait until it has finished or died."""
        log_path = folder / "driver.log"
        log_path.touch()
        try:
            pid = self._fork_server().start(folder, arguments)
        except (OSError, ValueError) as exc:
            pid, reason = None, f"the fork server failed: {exc}"
        while pid is not None and _alive(pid) and not RunState(load_status(folder)["state"]).terminal:
            time.sleep(0.05)
        doc = load_status(folder)
        if not RunState(doc["state"]).terminal:
            tail = step_log_tail(log_path, header=False)
            doc.update(state=RunState.FAILED.value, error=(reason if pid is None else
                       f"the step driver exited before the run finished: {tail}"))
            save_status(folder, doc)

    def _fork_server(self) -> "_ForkServer":
        with self._lock:
            if self._server is None or not self._server.alive():
                self._server = _ForkServer([self.python, "-m", "retrain.local_driver", "--serve", "--step-timeout",
                                            str(self.step_timeout_s), "--threads", str(self.threads)], self._env())
            return self._server

    def _run_step(self, argv: list[str], log_path: Path, cwd: Path) -> int:
        return run_subprocess(argv, log_path, cwd, self.step_timeout_s, self._env())

    def _env(self) -> dict[str, str]:
        path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        return {**os.environ, "OMP_NUM_THREADS": str(self.threads), "PYTHONPATH": path}


class _ForkServer:
    """retrain.local_driver --serve: one process that imported the libraries once and forks a driver per run."""

    def __init__(self, argv: list[str], env: Mapping[str, str]) -> None:
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(env),
                                      cwd=REPO_ROOT)
        self._lock = threading.Lock()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def start(self, folder: Path, arguments: Mapping[str, Any]) -> int:
        """The forked driver's pid."""
        with self._lock:
            self._proc.stdin.write(json.dumps({"folder": str(folder), "arguments": dict(arguments)}) + "\n")
            self._proc.stdin.flush()
            answer = self._proc.stdout.readline()
        if not answer.strip():
            raise OSError(f"the fork server exited with code {self._proc.poll()}")
        return int(answer)


def run_subprocess(argv: list[str], log_path: Path, cwd: Path, timeout: float,
                   env: Mapping[str, str] | None = None) -> int:
    """Run argv with stdout in `log_path` and stderr beside it; the exit code, -9 on timeout."""
    with log_path.open("w") as log, err_path(log_path).open("w") as err:
        log.write(shlex.join(argv) + "\n")
        log.flush()
        try:
            return subprocess.run(argv, stdout=log, stderr=err, env=env, cwd=cwd, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            err.write(f"\ntimed out after {timeout}s\n")
            return -9
        except OSError as exc:  # e.g. the command's program does not exist
            err.write(f"cannot run {argv[0]}: {exc}\n")
            return 127


def err_path(log_path: Path) -> Path:
    return log_path.with_suffix(".err")


def execute(folder: Path, arguments: dict[str, Any], run_step: StepRunner) -> None:
    """Run every step in order with `run_step`, recording progress in status.json; never raises."""
    try:
        _steps(folder, arguments, run_step)
    except Exception as exc:  # the caller is a thread or a driver: record the failure where status() reads it
        doc = load_status(folder)
        doc.update(state=RunState.FAILED.value, error=f"runner error: {type(exc).__name__}: {exc}")
        save_status(folder, doc)


def _steps(folder: Path, arguments: dict[str, Any], run_step: StepRunner) -> None:
    doc = load_status(folder)
    doc["state"] = RunState.RUNNING.value
    for step in STEPS:
        doc["steps"][step.name] = "running"
        save_status(folder, doc)
        began = time.monotonic()
        log_path = folder / f"{step.name}.log"
        argv, cwd = step_argv(folder, step, arguments)
        code = run_step(argv, log_path, cwd)
        doc.setdefault("seconds", {})[step.name] = round(time.monotonic() - began, 2)
        error = f"{step.name} exited with code {code}" if code != 0 else _output_problem(folder, step)
        if error:
            doc["steps"][step.name] = "failed"
            tail = step_log_tail(err_path(log_path), header=False) or step_log_tail(log_path)
            doc.update(state=RunState.FAILED.value, failed_step=step.name,
                       error=f"{error}; last lines of its output:\n{tail}" if tail else error)
            save_status(folder, doc)
            return
        doc["steps"][step.name] = "succeeded"
    metrics = json.loads((folder / "evaluate" / "metrics_out" / "metrics.json").read_text())["flat"]
    registered = json.loads((folder / "register" / "registered" / "registered.json").read_text())
    doc.update(state=RunState.SUCCEEDED.value, metrics=metrics,
               model={"name": registered["name"], "version": registered["version"]})
    save_status(folder, doc)


def _output_problem(folder: Path, step: Step) -> str | None:
    """The team's command exited 0: did it write an MLflow model where the contract says?"""
    if step.name != TRAIN:
        return None
    from retrain.components._models import mlflow_problem

    problem = mlflow_problem(folder / TRAIN / "model_out")
    return f"{TRAIN} wrote no MLflow model to --model-out: {problem}" if problem else None


def step_argv(folder: Path, step: Step, arguments: Mapping[str, Any]) -> tuple[list[str], Path]:
    """The step's command line and working folder: earlier steps' outputs by WIRING, the rest from `arguments`.

    The product's steps run `python components/<script>`; the train step runs the team's command in
    its code folder, with a leading `python` meaning this interpreter.
    """
    if step.script is None:
        argv, cwd = shlex.split(str(arguments["train"])), Path(arguments["code"])
    else:
        argv, cwd = ["python", str(COMPONENTS_DIR / step.script)], COMPONENTS_DIR
    if argv and argv[0] in PYTHONS:
        argv[0] = str(arguments.get("python") or sys.executable)
    for port in step.inputs:
        source = WIRING.get((step.name, port.name))
        value = folder / source[0] / source[1] if source else arguments.get(port.name)
        if value is not None:
            argv += [port.option, str(value)]
    for port in step.outputs:
        out = folder / step.name / port.name
        out.mkdir(parents=True, exist_ok=True)  # as Azure ML does: the output folder exists, empty
        argv += [port.option, str(out)]
    return argv, cwd


def step_log_tail(path: Path, header: bool = True) -> str:
    """The last non-blank lines of a log, without its first line (the command) when it has one."""
    lines = path.read_text().splitlines()[1 if header else 0:] if path.exists() else []
    return "\n".join([line for line in lines if line.strip()][-8:])


def load_status(folder: Path) -> dict[str, Any]:
    path = folder / "status.json"
    if not path.exists():
        raise NotFound(f"no local run {folder.name}")
    return json.loads(path.read_text())


def save_status(folder: Path, doc: Mapping[str, Any]) -> None:
    write_json(folder / "status.json", doc, default=str)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
