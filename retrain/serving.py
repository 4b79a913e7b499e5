"""Local deployments as Azure ML runs them: each is Azure ML's inference server (`azmlinfsrv`) in a process of its
own on loopback, running the deployment's scoring script (the team's `score.py` with init()/run(), or, for an MLflow
model deployed without one, `retrain/scoring/mlflow_score.py`) with the model folder in AZUREML_MODEL_DIR.

A `DeploymentSpec` is what Azure ML's deployment entity says, reduced to what one machine can honour; a canary
clones its champion's and changes only the model. `ServerPool` keeps one server per deployment of an endpoint:
started when the deployment appears, replaced when its spec changes, stopped when it is removed.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from core.clock import Clock
from core.errors import MlopsError, RetryableError, ValidationFailed

SCORING_DIR = Path(__file__).with_name("scoring")
NO_CODE_SCRIPT = "mlflow_score.py"
ZYGOTE = SCORING_DIR / "zygote.py"
log = logging.getLogger("mlops.serving")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b[^:]*: ")


class DeploymentUnavailable(RetryableError):
    """A deployment's server is not running: still starting past its deadline, failed to start, or stopped."""


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: the model ('name:version'), the code configuration (a folder and its scoring script; none:
    MLflow no-code), the environment (a Python with azureml-inference-server-http; none: the pool's), environment
    variables, data collection ({"collections": {"model_inputs": {"enabled": true, "sampling_rate": 1.0}}}),
    the request timeout and the number of workers (Azure ML's instance count, on one machine)."""

    model: str
    code: str | None = None
    scoring_script: str | None = None
    environment: str | None = None
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    data_collector: Mapping[str, Any] | None = None
    request_timeout_ms: int = 5000
    instance_count: int = 1

    @classmethod
    def from_state(cls, doc: Mapping[str, Any]) -> "DeploymentSpec":
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def from_file(cls, path: str | Path) -> "DeploymentSpec":
        """A team's local deployment (MLOPS_LOCAL_DEPLOYMENT), YAML: code, scoring_script, environment_variables,
        data_collector, request_timeout_ms, instance_count, environment; `code` relative to the file."""
        import yaml

        try:
            doc = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValidationFailed(f"local deployment {path}: {exc}", field="MLOPS_LOCAL_DEPLOYMENT") from exc
        if not isinstance(doc, Mapping):
            raise ValidationFailed(f"local deployment {path} must be a mapping", field="MLOPS_LOCAL_DEPLOYMENT")
        unknown = sorted(set(doc) - (set(cls.__dataclass_fields__) - {"model"}))
        if unknown:
            raise ValidationFailed(f"local deployment {path}: unknown key(s) {', '.join(unknown)}",
                                   field=unknown[0])
        if doc.get("code"):
            doc["code"] = str((Path(path).resolve().parent / str(doc["code"])).resolve())
            script = Path(doc["code"]) / str(doc.get("scoring_script") or "score.py")
            if not script.is_file():
                raise ValidationFailed(f"local deployment {path}: no scoring script {script}", field="scoring_script")
            doc["scoring_script"] = script.name
        try:
            return cls(model="", **doc)
        except TypeError as exc:
            raise ValidationFailed(f"local deployment {path}: {exc}", field="MLOPS_LOCAL_DEPLOYMENT") from exc

    def to_state(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    def with_model(self, model: str) -> "DeploymentSpec":
        return replace(self, model=model)


def default_environment() -> str:
    """The repository's serving environment (.venv-serve, built by make) if there is one, else this Python."""
    candidate = Path(__file__).resolve().parent.parent / ".venv-serve" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class Forked:
    """A server forked by the zygote: the part of subprocess.Popen the pool uses (the zygote reaps it)."""

    def __init__(self, pid: int, zygote: "Zygote") -> None:
        self.pid, self._zygote = pid, zygote

    @property
    def returncode(self) -> int | None:
        return self._zygote.exit_code(self.pid)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"deployment server {self.pid}", timeout)
            time.sleep(0.05)
        return int(self.returncode)


class Zygote:
    """One process of a serving environment with its libraries imported (retrain/scoring/zygote.py); each
    deployment's server is a fork of it, so a deployment starts in about the time its init() takes."""

    def __init__(self, python: str, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        try:
            self._proc = subprocess.Popen([python, str(ZYGOTE)], stdin=subprocess.PIPE,  # noqa: S603
                                          stdout=subprocess.PIPE, stderr=self._log, start_new_session=True)
        except OSError as exc:
            self._log.close()
            raise DeploymentUnavailable(f"serving environment {python} cannot start: {exc} (make builds "
                                        ".venv-serve; a deployment's `environment` names another Python)") from exc
        self._exits: dict[int, int] = {}
        self._replies: queue.Queue[dict] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name="zygote reader", daemon=True).start()

    def spawn(self, args: list[str], *, env: Mapping[str, str], cwd: Path, log: Path) -> Forked:
        request = {"args": args, "env": dict(env), "cwd": str(cwd), "log": str(log)}
        with self._lock:
            try:
                self._proc.stdin.write((json.dumps(request) + "\n").encode())
                self._proc.stdin.flush()
                reply = self._replies.get(timeout=60)
            except (OSError, queue.Empty) as exc:
                raise DeploymentUnavailable(f"the serving environment's zygote did not start a server: {exc}; "
                                            f"see {self._log.name}") from exc
        if "pid" not in reply:
            raise DeploymentUnavailable(f"the serving environment's zygote stopped; see {self._log.name}")
        return Forked(int(reply["pid"]), self)

    def exit_code(self, pid: int) -> int | None:
        """The server's exit code once the zygote reaped it; -1 for one gone while the zygote was not there."""
        if pid in self._exits or self._proc.poll() is None:
            return self._exits.get(pid)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return -1
        return None

    def close(self) -> None:
        """The zygote exits; servers still running notice and stop themselves (they are stopped first anyway)."""
        if self._proc.poll() is None:
            self._proc.stdin.close()
            os.killpg(self._proc.pid, signal.SIGTERM)
            self._proc.wait(10)
        self._log.close()

    def _read(self) -> None:
        for line in self._proc.stdout:
            doc = json.loads(line)
            if "exited" in doc:
                self._exits[int(doc["exited"])] = int(doc["code"])
            elif "pid" in doc:
                self._replies.put(doc)
        self._replies.put({"stopped": True})  # the zygote died: a waiting spawn fails at once


class DeploymentServer:
    """One deployment's inference server process; `wait_ready` before `score`."""

    def __init__(self, endpoint: str, name: str, spec: DeploymentSpec, *, model_dir: Path, zygote: "Zygote",
                 log_path: Path, env: Mapping[str, str], lineage: Mapping[str, Any] | None = None) -> None:
        from retrain.predictions import model_card

        self.endpoint, self.name, self.spec, self.model_dir = endpoint, name, spec, Path(model_dir)
        self.port, self.log_path = free_port(), log_path
        card = model_card(model_dir)
        lineage = dict(lineage or {})
        # The product's feature contract (the registry's lineage: name -> numeric|categorical) when it has one;
        # the columns the model requires: its signature's, else those features.
        self.features: dict[str, str] = dict(lineage.get("features") or {})
        self.classes, self.task = card.get("classes") or lineage.get("classes"), lineage.get("task")
        self.columns = card.get("columns") or list(self.features)
        code = Path(spec.code) if spec.code else SCORING_DIR
        script = spec.scoring_script or NO_CODE_SCRIPT
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.ready_after_s: float | None = None
        self._proc = zygote.spawn(["--entry_script", str(code / script), "--port", str(self.port),
                                   "--worker_count", str(spec.instance_count)], env=env, cwd=code, log=log_path)
        self._ready = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float) -> None:
        """Blocks until the liveness route answers (init() done), the process dies, or the deadline passes."""
        deadline = self.started + timeout_s
        while not self._ready:
            if self._proc.poll() is not None:
                raise DeploymentUnavailable(f"deployment {self.endpoint}/{self.name} ({self.spec.model}) exited "
                                            f"with code {self._proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise DeploymentUnavailable(f"deployment {self.endpoint}/{self.name} not ready after {timeout_s:.0f} s")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/")  # the liveness route: it answers once init() has run
                self._ready = conn.getresponse().status == 200
                self.ready_after_s = time.monotonic() - self.started
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
            finally:
                conn.close()

    def score(self, body: bytes) -> tuple[int, Any]:
        """POST /score; returns the status and the decoded answer (text when it is not JSON)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.spec.request_timeout_ms / 1000 + 1)
        try:
            conn.request("POST", "/score", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            status, payload = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise DeploymentUnavailable(f"deployment {self.endpoint}/{self.name} did not answer: {exc}") from exc
        finally:
            conn.close()
        try:
            return status, json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return status, payload.decode("utf-8", "replace")

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the process group (gunicorn finishes the request in hand), SIGKILL after `grace_s`."""
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()

    def log_tail(self, lines: int = 5) -> str:
        """The scoring script's own exception lines if the log has any (not the server's wrappers), else its end."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        errors = [line for line in text.splitlines() if _EXCEPTION.match(line)
                  and not line.startswith("azureml_inference_server_http")]
        tail = text.strip().splitlines()[-lines:]
        return " | ".join(dict.fromkeys(errors[-2:])) + (f" (log: {self.log_path})" if errors else "\n".join(tail))


class ServerPool:
    """The servers of one endpoint's deployments, kept in step with the endpoint's state by `sync`."""

    def __init__(self, endpoint: str, registry: Any, clock: Clock, *, work_dir: str | Path,
                 python: str | None = None, start_timeout_s: float = 180.0) -> None:
        self.endpoint, self.registry, self.clock = endpoint, registry, clock
        self.work_dir, self.python = Path(work_dir), python or default_environment()
        self.start_timeout_s = start_timeout_s
        self._servers: dict[str, DeploymentServer] = {}
        self._failed: dict[str, tuple[DeploymentSpec, str]] = {}
        self._collectors: dict[str, Any] = {}
        self._zygotes: dict[str, Zygote] = {}
        self._lock = threading.Lock()

    def sync(self, deployments: Mapping[str, DeploymentSpec]) -> None:
        with self._lock:
            for name, spec in deployments.items():
                running = self._servers.get(name)
                failed = self._failed.get(name)
                if (running and running.spec == spec) or (failed and failed[0] == spec):
                    continue
                self._retire(name)
                self._start(name, spec)
            for name in (set(self._servers) | set(self._failed)) - set(deployments):
                self._retire(name)

    def server(self, name: str) -> DeploymentServer:
        """The deployment's server, ready; DeploymentUnavailable if it cannot serve."""
        with self._lock:
            server, failed = self._servers.get(name), self._failed.get(name)
        if failed:
            raise DeploymentUnavailable(failed[1])
        if server is None:
            raise DeploymentUnavailable(f"no server for deployment {self.endpoint}/{name}")
        server.wait_ready(self.start_timeout_s)
        return server

    def status(self) -> dict[str, str]:
        with self._lock:
            out = {n: ("failed" if n in self._failed else "running" if s.alive() else "exited")
                   for n, s in self._servers.items()}
            out.update({n: "failed" for n in self._failed})
            return out

    def close(self) -> None:
        with self._lock:
            for name in list(self._servers) + list(self._failed):
                self._retire(name, wait=True)
            for zygote in self._zygotes.values():
                zygote.close()
            self._zygotes.clear()

    def _start(self, name: str, spec: DeploymentSpec) -> None:
        from retrain.deploy import parse_model

        try:
            version = parse_model(spec.model)
            model_dir = Path(self.registry.model_path(version))
            lineage = self.registry.get(version.name, version.version).get("lineage") or {}
        except MlopsError as exc:  # an unknown model fails this deployment, not the endpoint
            self._failed[name] = (spec, f"deployment {self.endpoint}/{name}: model {spec.model}: {exc}")
            log.error("%s", self._failed[name][1])
            return
        env = {**os.environ, "AZUREML_MODEL_DIR": str(model_dir.parent), "MLFLOW_MODEL_FOLDER": model_dir.name,
               "ENDPOINT_NAME": self.endpoint, "DEPLOYMENT_NAME": name, "MLOPS_MODEL_VERSION": spec.model,
               "SCORING_TIMEOUT_MS": str(spec.request_timeout_ms), "AML_APP_INSIGHTS_ENABLED": "false",
               "GUNICORN_CMD_ARGS": "--no-control-socket",  # gunicorn 23+ would share one socket in $HOME
               **self._collector_env(name, spec), **dict(spec.environment_variables)}
        log_path = self.work_dir / "logs" / f"{self.endpoint}-{name}-{spec.model.replace(':', '-')}.log"
        try:
            self._servers[name] = DeploymentServer(self.endpoint, name, spec, model_dir=model_dir,
                                                   zygote=self._zygote(spec.environment or self.python),
                                                   log_path=log_path, env=env, lineage=lineage)
        except DeploymentUnavailable as exc:
            self._failed[name] = (spec, str(exc))

    def _zygote(self, python: str) -> Zygote:
        """DeploymentUnavailable if the environment cannot start (the deployment fails, not the endpoint)."""
        if python not in self._zygotes:
            index = len(self._zygotes)
            self._zygotes[python] = Zygote(python, self.work_dir / "logs" / f"{self.endpoint}-zygote-{index}.log")
        return self._zygotes[python]

    def _collector_env(self, name: str, spec: DeploymentSpec) -> dict[str, str]:
        collections = dict((spec.data_collector or {}).get("collections") or {})
        if not collections:
            return {}
        from retrain.datacollector import LocalDataCollector, config_json

        agent = LocalDataCollector(self.work_dir.parent, self.endpoint, name, self.clock).start()
        self._collectors[name] = agent
        config = self.work_dir / "mdc" / f"{self.endpoint}-{name}.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps(config_json(collections)))
        return {"AZUREML_MDC_CONFIG_PATH": str(config), "AZUREML_MDC_HOST": "127.0.0.1",
                "AZUREML_MDC_PORT": str(agent.port)}

    def _retire(self, name: str, wait: bool = False) -> None:
        """Stops a removed deployment in the background: requests in hand finish, new ones go elsewhere."""
        self._failed.pop(name, None)
        server, agent = self._servers.pop(name, None), self._collectors.pop(name, None)

        def stop() -> None:
            if server is not None:
                server.stop()
            if agent is not None:
                time.sleep(0.0 if wait else 2.0)  # let the stopped script's last payloads arrive
                agent.stop()

        if wait:
            stop()
        else:
            threading.Thread(target=stop, name=f"stop {self.endpoint}/{name}", daemon=True).start()
