"""Deployers: who serves an endpoint's traffic. Canary in, then promote (old removed) or roll back.

Each operation is a short list of idempotent steps. The local deployer journals the list in the state
file before acting and advances a cursor with every step, so a crash leaves a state the next call
finishes first. The Azure deployer derives every step from the endpoint's live state, so repeating an
interrupted operation completes it.
"""
from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from core.errors import NotFound, PermanentError, ValidationFailed
from core.files import write_json
from core.types import EndpointRef, ModelVersion, TrafficSplit
from retrain.serving import DeploymentSpec

NAMES = ("blue", "green")


def parse_model(text: str) -> ModelVersion:
    """'name:version', 'azureml:name:version' or an ARM id '.../models/name/versions/3'."""
    if "/models/" in text:
        tail = text.split("/models/", 1)[1].split("/")
        return ModelVersion(tail[0], tail[2])
    name, _, version = text.removeprefix("azureml:").rpartition(":")
    if not name or not version:
        raise ValidationFailed(f"model reference {text!r} is not name:version", field="model")
    return ModelVersion(name, version)


def check_percent(percent: int) -> None:
    if not isinstance(percent, int) or not 0 < percent < 100:
        raise ValidationFailed(f"canary percent must be an integer in 1..99, got {percent!r}", field="percent")


def canary_name(deployments: list[str]) -> str:
    for name in NAMES:
        if name not in deployments:
            return name
    raise PermanentError(f"endpoint already has deployments {deployments}; finish or roll back first")


def champion_of(traffic: dict[str, int], canary: str | None) -> str | None:
    others = {k: v for k, v in traffic.items() if k != canary}
    return max(sorted(others), key=lambda k: others[k]) if others else None


class EndpointStateFile:
    """The local endpoint's state: one JSON file, replaced atomically; writers take a file lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"endpoints": {}, "faults": {}}
        return json.loads(self.path.read_text())

    @contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write under an exclusive lock; `save` inside writes intermediate states."""
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self.read()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def save(self, state: dict[str, Any]) -> None:
        write_json(self.path, state)


def _create(ep: dict, name: str, spec: dict | str) -> None:
    ep["deployments"][name] = {"model": spec} if isinstance(spec, str) else dict(spec)  # str: journals of old
    ep["traffic"].setdefault(name, 0)


def _traffic(ep: dict, shares: dict[str, int]) -> None:
    TrafficSplit(shares)  # validates: sums to 100, no negatives
    ep["traffic"] = dict(shares)


def _remove(ep: dict, name: str) -> None:
    if ep["traffic"].get(name, 0):
        raise PermanentError(f"deployment {name} still takes {ep['traffic'][name]}% of traffic")
    ep["deployments"].pop(name, None)
    ep["traffic"].pop(name, None)


def _mark(ep: dict, canary: str | None) -> None:
    ep["canary"] = canary


_STEPS = {"create": _create, "traffic": _traffic, "remove": _remove, "mark": _mark}


class LocalDeployer:
    """`template` is the first deployment of an empty endpoint (scoring script, environment, data collection...);
    every canary clones the champion's deployment and changes only the model, as the Azure deployer does."""

    backend = "local"

    def __init__(self, endpoint_state_path: str | Path, registry: Any = None,
                 template: DeploymentSpec | None = None) -> None:
        self.state = EndpointStateFile(endpoint_state_path)
        self.registry = registry
        self.template = template or DeploymentSpec(model="")

    def current(self, endpoint: EndpointRef) -> TrafficSplit:
        return self._perform(endpoint, [])

    def models(self, endpoint: EndpointRef) -> dict[str, ModelVersion]:
        ep = self.state.read()["endpoints"].get(endpoint.name, {})
        return {name: parse_model(d["model"]) for name, d in ep.get("deployments", {}).items()}

    def deployments(self, endpoint: EndpointRef) -> dict[str, DeploymentSpec]:
        ep = self.state.read()["endpoints"].get(endpoint.name, {})
        return {name: DeploymentSpec.from_state(d) for name, d in ep.get("deployments", {}).items()}

    def canary(self, endpoint: EndpointRef) -> str | None:
        return self.state.read()["endpoints"].get(endpoint.name, {}).get("canary")

    def start_canary(self, endpoint: EndpointRef, candidate: ModelVersion, percent: int) -> TrafficSplit:
        """A new deployment at `percent`; on an endpoint with no deployment it simply takes 100%."""
        check_percent(percent)
        if self.registry is not None:
            self.registry.get(candidate.name, candidate.version)  # NotFound for an unknown model
        self.current(endpoint)  # finish any interrupted operation first
        ep = self._endpoint(endpoint)
        serving = {name: d["model"] for name, d in ep["deployments"].items()}
        if str(candidate) in serving.values():
            return TrafficSplit(ep["traffic"])  # already deployed: a repeated call
        if ep["canary"]:
            raise PermanentError(f"{endpoint.name} already has canary {ep['canary']} "
                                 f"({serving[ep['canary']]}); promote or roll it back first")
        name = canary_name(list(serving))
        champion = champion_of(ep["traffic"], None)
        if champion is None:
            spec = self.template.with_model(str(candidate)).to_state()
            return self._perform(endpoint, [["create", name, spec], ["traffic", {name: 100}]])
        spec = DeploymentSpec.from_state(ep["deployments"][champion]).with_model(str(candidate)).to_state()
        return self._perform(endpoint, [["create", name, spec], ["mark", name],
                                        ["traffic", {champion: 100 - percent, name: percent}]])

    def promote(self, endpoint: EndpointRef, candidate: ModelVersion) -> TrafficSplit:
        self.current(endpoint)
        ep = self._endpoint(endpoint)
        target = [n for n, d in ep["deployments"].items() if d["model"] == str(candidate)]
        if not target:
            raise NotFound(f"{candidate} is not deployed on {endpoint.name}")
        others = [n for n in ep["deployments"] if n != target[0]]
        steps = [["traffic", {target[0]: 100, **{o: 0 for o in others}}], *[["remove", o] for o in others],
                 ["mark", None]]
        return self._perform(endpoint, steps)

    def rollback(self, endpoint: EndpointRef) -> TrafficSplit:
        """Remove the canary; the champion takes all traffic. Without a canary there is nothing to do."""
        self.current(endpoint)
        ep = self._endpoint(endpoint)
        canary = ep["canary"]
        champion = champion_of(ep["traffic"], canary)
        if canary is None or champion is None:
            return TrafficSplit(ep["traffic"])
        return self._perform(endpoint, [["traffic", {champion: 100, canary: 0}], ["remove", canary],
                                        ["mark", None]])

    def inject_fault(self, target: ModelVersion | str, *, error_rate: float = 0.0,
                     extra_latency_ms: float = 0.0) -> None:
        """Make a deployment (by name) or every deployment of a model fail a share of its requests (HTTP 500)
        or answer slower: for tests and the demo's misbehaving canary. Zero for both clears the fault."""
        if not 0.0 <= error_rate <= 1.0:
            raise ValidationFailed(f"error_rate must be within 0..1, got {error_rate}", field="error_rate")
        if extra_latency_ms < 0:
            raise ValidationFailed(f"extra_latency_ms cannot be negative: {extra_latency_ms}",
                                   field="extra_latency_ms")
        with self.state.locked() as state:
            state["faults"].pop(str(target), None)
            if error_rate or extra_latency_ms:
                state["faults"][str(target)] = {"error_rate": error_rate, "extra_latency_ms": extra_latency_ms}
            self.state.save(state)

    def _endpoint(self, endpoint: EndpointRef) -> dict[str, Any]:
        return _blank(self.state.read(), endpoint.name)

    def _perform(self, endpoint: EndpointRef, steps: list[list[Any]]) -> TrafficSplit:
        with self.state.locked() as state:
            ep = _blank(state, endpoint.name)
            pending = ep.get("pending")
            if pending:  # an interrupted operation: finish it before anything else
                self._advance(state, ep, pending)
            if steps:
                ep["pending"] = {"steps": steps, "next": 0}
                self.state.save(state)
                self._advance(state, ep, ep["pending"])
            return TrafficSplit(ep["traffic"])

    def _advance(self, state: dict, ep: dict, pending: dict) -> None:
        while pending["next"] < len(pending["steps"]):
            kind, *args = pending["steps"][pending["next"]]
            _STEPS[kind](ep, *args)
            pending["next"] += 1
            self.state.save(state)
        ep["pending"] = None
        self.state.save(state)


def _blank(state: dict[str, Any], name: str) -> dict[str, Any]:
    return state["endpoints"].setdefault(name, {"deployments": {}, "traffic": {}, "canary": None, "pending": None})


from retrain.azureml_deploy import AzureMLDeployer  # noqa: E402  (re-exported: both deployers live here)

__all__ = ["AzureMLDeployer", "EndpointStateFile", "LocalDeployer"]
