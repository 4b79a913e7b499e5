"""Runs the retraining pipeline on this machine: the same component scripts, each in its own process, in order.

Layout: <root>/runs/<run_id>/request.json, status.json (rewritten atomically after every change, so
another process can read it), <step>.log, <step>/<output>/ folders, and driver.log (isolation "fork").

Isolation "fork" (the default where os.fork exists) starts one driver process per run
(`retrain.local_driver`) that imports pandas/pyarrow/sklearn once and forks a child per step, which runs
the script as `__main__`; importing those libraries took ~3 s of every step. Isolation "process" runs
`python <script>` per step, as Azure ML does.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from core.errors import NotFound, ValidationFailed
from core.files import write_json
from core.types import ModelVersion, RunRef, RunState, RunStatus
from retrain.steps import COMPONENTS_DIR, STEPS, WIRING, Step

REPO_ROOT = Path(__file__).resolve().parent.parent
BACKEND = "local"
REQUIRED = ("model_name", "features", "label", "reference")
ISOLATIONS = ("fork", "process")

# Runs one step: (argv: the script then its arguments, log file) -> exit code. Writes the log.
StepRunner = Callable[[list[str], Path], int]


def local_run_id(idempotency_key: str) -> str:
    return "run-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]


def step_arguments(request: Mapping[str, Any], registry: Path) -> dict[str, Any]:
    """The pipeline's parameters from a retrain request (the values the Azure pipeline binds too)."""
    missing = [k for k in REQUIRED if not request.get(k)]
    if missing:
        raise ValidationFailed(f"retrain request is missing {', '.join(missing)}", field=missing[0])
    lineage = {"run_id": request.get("run_id"), "endpoint": request.get("endpoint"),
               "parent": request.get("parent"), "data_window": request.get("window"),
               "requested_at": request.get("requested_at")}
    return {"reference": request["reference"], "recent": request.get("recent"),
            "rule": request.get("rule", "reference+recent"), "features": json.dumps(request["features"]),
            "label": request["label"], "time_column": request.get("time_column", "time"),
            "holdout_days": int(request.get("holdout_days", 7)),
            "random_state": int(request.get("random_state", 0)), "champion": request.get("champion"),
            "slices": json.dumps(list(request.get("slices", []))), "name": request["model_name"],
            "lineage": json.dumps(lineage), "registry": str(registry)}


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

    def submit(self, request: Mapping[str, Any], *, idempotency_key: str) -> RunRef:
        """Start a run; a resubmission with the same key returns the same run and starts nothing."""
        if not idempotency_key:
            raise ValidationFailed("idempotency_key must be non-empty", field="idempotency_key")
        run_id = local_run_id(idempotency_key)
        request = {**request, "run_id": request.get("run_id") or run_id}
        arguments = step_arguments(request, self.registry_root)
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
        path = self.root / "runs" / run.run_id / f"{step}.log"
        return path.read_text() if path.exists() else ""

    def _execute(self, folder: Path, arguments: dict[str, Any]) -> None:
        execute(folder, arguments, self._run_step)

    def _drive(self, folder: Path, arguments: dict[str, Any]) -> None:
        """Run the driver and wait for it (which also reaps it, so a dead driver reads as dead)."""
        argv = [self.python, "-m", "retrain.local_driver", str(folder), "--step-timeout", str(self.step_timeout_s),
                "--threads", str(self.threads)]
        log_path = folder / "driver.log"
        try:
            with log_path.open("w") as log:
                code = subprocess.run(argv, input=json.dumps(arguments), text=True, stdout=log,
                                      stderr=subprocess.STDOUT, env=self._env(), cwd=REPO_ROOT).returncode
        except OSError as exc:
            code, log_path = f"unknown ({exc})", None
        doc = load_status(folder)
        if not RunState(doc["state"]).terminal:
            tail = step_log_tail(log_path, header=False) if log_path else ""
            doc.update(state=RunState.FAILED.value,
                       error=f"the step driver exited with code {code} before the run finished: {tail}")
            save_status(folder, doc)

    def _run_step(self, argv: list[str], log_path: Path) -> int:
        command = [self.python, *argv]
        with log_path.open("w") as log:
            log.write(" ".join(command) + "\n")
            log.flush()
            try:
                return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=self._env(),
                                      cwd=COMPONENTS_DIR, timeout=self.step_timeout_s).returncode
            except subprocess.TimeoutExpired:
                log.write(f"\ntimed out after {self.step_timeout_s}s\n")
                return -9

    def _env(self) -> dict[str, str]:
        path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        return {**os.environ, "OMP_NUM_THREADS": str(self.threads), "PYTHONPATH": path}


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
        code = run_step(step_argv(folder, step, arguments), log_path)
        doc.setdefault("seconds", {})[step.name] = round(time.monotonic() - began, 2)
        if code != 0:
            doc["steps"][step.name] = "failed"
            doc.update(state=RunState.FAILED.value, failed_step=step.name,
                       error=f"{step.name} exited with code {code}: {step_log_tail(log_path)}")
            save_status(folder, doc)
            return
        doc["steps"][step.name] = "succeeded"
    metrics = json.loads((folder / "evaluate" / "metrics_out" / "metrics.json").read_text())["flat"]
    registered = json.loads((folder / "register" / "registered" / "registered.json").read_text())
    doc.update(state=RunState.SUCCEEDED.value, metrics=metrics,
               model={"name": registered["name"], "version": registered["version"]})
    save_status(folder, doc)


def step_argv(folder: Path, step: Step, arguments: Mapping[str, Any]) -> list[str]:
    """The step's script and its arguments: earlier steps' outputs by WIRING, the rest from `arguments`."""
    argv = [str(COMPONENTS_DIR / step.script)]
    for port in step.inputs:
        source = WIRING.get((step.name, port.name))
        value = folder / source[0] / source[1] if source else arguments.get(port.name)
        if value is not None:
            argv += [f"--{port.name}", str(value)]
    for port in step.outputs:
        argv += [f"--{port.name}", str(folder / step.name / port.name)]
    return argv


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
