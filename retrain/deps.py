"""What the retrain handlers need, handed in by the composition root (or a test)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping, Protocol

from core.clock import Clock
from core.ports import PipelineRunner, Publisher, StateStore, TelemetrySource
from core.telemetry import HealthReader
from core.types import EndpointRef, ModelVersion, TrafficSplit
from retrain.gate import GatePolicy
from retrain.policy import RetrainPolicy


class ModelDeployer(Protocol):
    """core.ports.Deployer plus what the handlers read back: which model each deployment serves."""

    def current(self, endpoint: EndpointRef) -> TrafficSplit: ...
    def start_canary(self, endpoint: EndpointRef, candidate: ModelVersion, percent: int) -> TrafficSplit: ...
    def promote(self, endpoint: EndpointRef, candidate: ModelVersion) -> TrafficSplit: ...
    def rollback(self, endpoint: EndpointRef) -> TrafficSplit: ...
    def models(self, endpoint: EndpointRef) -> dict[str, ModelVersion]: ...


@dataclass(frozen=True)
class RetrainTarget:
    """How one endpoint's model is retrained. `reference` and exported data share the columns
    features + label + time_column; telemetry's `label` column is renamed to `label` here.

    The training step is the team's: a command (`train`, run in `code`; in Azure ML a command component
    with `environment`), or in Azure ML a registered component (`train_component`) or pipeline job YAML
    (`train_job`) with the contract's inputs and output (docs/training.md).
    """

    endpoint: str
    model_name: str
    features: Mapping[str, str]
    label: str
    reference: str
    task: str = "binary"  # binary | multiclass | regression
    time_column: str = "time"
    slices: tuple[str, ...] = ()
    rule: str = "reference+recent"
    holdout_days: int = 7
    lookback: timedelta = timedelta(days=60)
    train: str | None = None
    code: str | None = None
    environment: str | None = None
    train_component: str | None = None
    train_job: str | None = None

    def training(self) -> dict[str, str | None]:
        """The training step's settings, as a retrain request carries them."""
        return {"train": self.train, "code": self.code, "environment": self.environment,
                "train_component": self.train_component, "train_job": self.train_job}


@dataclass(frozen=True)
class RetrainConfig:
    retrain: RetrainPolicy = field(default_factory=RetrainPolicy)
    gate: GatePolicy = field(default_factory=GatePolicy)
    canary_percent: int = 10
    bake: timedelta = timedelta(hours=6)
    max_error_rate: float = 0.02
    max_p95_latency_ms: float = 500.0
    min_canary_requests: int = 50
    request_timeout: timedelta = timedelta(days=1)  # a request not started by then is failed (frees the endpoint)
    # Per-state deadlines (state name -> duration) over retrain.deploy_watch.deadline's defaults; a run past
    # its state's deadline is failed by the tracking timer, its canary traffic rolled back first.
    deadlines: Mapping[str, timedelta] = field(default_factory=dict)
    export_dir: Path = Path(".local/retrain/exports")


@dataclass
class RetrainDeps:
    store: StateStore
    publisher: Publisher
    runner: PipelineRunner
    registry: Any  # LocalModelRegistry | AzureMLModelRegistry: get(name, version)["path"]
    deployer: ModelDeployer
    health: HealthReader
    labelled: TelemetrySource
    clock: Clock
    targets: Mapping[str, RetrainTarget]
    config: RetrainConfig = field(default_factory=RetrainConfig)
