"""One replay, end to end: champion, endpoint, devhost, the history's traffic, three strategies, outputs."""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from core.types import EndpointRef, ModelVersion
from replay import workspace as wsp
from replay.observers import AuditFeed, WebhookReceiver
from replay.strategies import Scheduled, monthly_metric, months, scored_rows, served_metric
from replay.traffic_replay import Replay

log = logging.getLogger("replay")


@dataclass(frozen=True)
class Options:
    history: Any  # retrain.history.History
    train: str  # the team's training command
    out: Path = Path("out/backtest")
    code: Path = Path(".")  # where the training command runs
    spec: Path | None = None
    config: Path | None = None
    train_until: pd.Timestamp | None = None  # default: the first quarter of the history's time span
    until: pd.Timestamp | None = None  # default: the end of the history
    sample: float = 1.0
    seed: int = 13
    fault_canary: int = 0  # the Nth canary misbehaves (an injected error rate), to show a rollback; 0: none
    progress: bool = True
    scheduled: bool = True
    dataset: str | None = None


def run(opts: Options) -> dict[str, Any]:
    from replay.setup import monitor_spec, retrain_config

    started = time.perf_counter()
    history = opts.history
    start = opts.train_until or history.start + (history.end - history.start) / 4
    end = opts.until or history.end + pd.Timedelta(microseconds=1)
    ws = wsp.create(opts.out)
    spec = monitor_spec(ws, opts.spec, history, name=history.path.stem.replace("_", "-") or "backtest")
    config = retrain_config(ws, opts.config, endpoint=spec.endpoint.name, train=opts.train, code=opts.code)
    features = dict(spec.kinds)
    traffic = _phase("load the history", lambda: wsp.traffic_from(history, features, opts.sample, opts.seed))
    world = World(opts, ws, spec, traffic, start.floor("D"), end, spec.label.lag, _entry(config, spec))
    with WebhookReceiver() as webhook:
        wsp.apply_env(ws.env(webhook.url))
        box, clock = _compose(world.start)
        champion = _phase(f"train the champion (to {world.start:%Y-%m-%d}) with the team's command",
                          lambda: _champion(world, box))
        scheduled = None
        if opts.scheduled:
            scheduled = Scheduled(world, box.retrain_deps.runner, box.retrain_deps.registry)
            scheduled.start_thread()
        outcome = _loop(world, box, clock)
        model = box.retrain_deps.registry.load_model(champion)
        strategies = _phase("score the three strategies", lambda: _strategies(world, box, model, scheduled,
                                                                            outcome))
    from replay.report import write_outputs

    return write_outputs(world, box, outcome, strategies, webhook.received, time.perf_counter() - started)


@dataclass(frozen=True)
class World:
    opts: Options
    ws: wsp.Workspace
    spec: Any  # monitors.spec.MonitorSpec
    traffic: wsp.Traffic
    start: pd.Timestamp
    end: pd.Timestamp
    label_lag: timedelta
    entry: dict[str, Any]  # the endpoint's retrain settings (retrain/config.py), as the handlers use them

    @property
    def endpoint(self) -> str:
        return self.spec.endpoint.name

    @property
    def model(self) -> str:
        return self.spec.model.name

    @property
    def task(self) -> str:
        return self.traffic.task

    def request(self, run_id: str, reference: str, recent: str | None, window: dict[str, str], at: str,
                model: str | None = None, rule: str = "reference+recent") -> dict[str, Any]:
        """A pipeline request as the retrain handlers would make it, for the champion and the monthly schedule."""
        return {"run_id": run_id, "endpoint": self.endpoint, "model_name": model or self.model,
                "features": dict(self.traffic.features), "label": wsp.LABEL, "task": self.task,
                "time_column": "time", "reference": reference, "recent": recent, "rule": rule,
                "holdout_days": self.entry["holdout_days"], "slices": list(self.entry["slices"]), "champion": None,
                "parent": None, "window": window, "requested_at": at, "train": self.entry["train"],
                "code": self.entry["code"]}


def _entry(config: Path, spec: Any) -> dict[str, Any]:
    """The endpoint's retrain target as retrain/wiring.py builds it from the spec and the config."""
    from retrain.config import apply_overrides, load_config
    from retrain.deps import RetrainConfig
    from retrain.wiring import targets_from_specs

    _, overrides = load_config(config, RetrainConfig())
    target = apply_overrides(targets_from_specs([spec]), overrides)[spec.endpoint.name]
    return {"rule": target.rule, "holdout_days": target.holdout_days, "slices": target.slices,
            "lookback": target.lookback, "train": target.train, "code": target.code}


def _compose(start: pd.Timestamp) -> tuple[Any, Any]:
    import bootstrap
    from core.clock import ManualClock

    clock = ManualClock(start.to_pydatetime())
    box = bootstrap.configure(clock=clock)
    return box, clock


def _champion(world: World, box: Any) -> ModelVersion:
    first = world.traffic.frame["time"].iloc[0]
    rows = wsp.training_frame(world.traffic.between(pd.Timestamp(first, tz="UTC"), world.start),
                              world.traffic.features)
    if len(rows) < 50:
        from core.errors import ValidationFailed

        raise ValidationFailed(f"{world.opts.history.path}: only {len(rows)} rows before {world.start:%Y-%m-%d} "
                               f"to train the first champion on (--train-until)", field="train-until")
    rows.to_parquet(world.ws.reference_path, index=False)
    deps = box.retrain_deps
    request = world.request("champion", str(world.ws.reference_path), None,
                            {"start": rows["time"].min().isoformat(), "end": world.start.isoformat()},
                            world.start.isoformat())
    status = deps.runner.wait(deps.runner.submit(request, idempotency_key="backtest-champion"), timeout=1800)
    if status.model is None:
        raise RuntimeError(f"champion training failed at {status.failed_step}: {status.error}")
    model = ModelVersion(status.model.name, status.model.version)
    # The monitor's reference is the one the pipeline wrote for this version: its training data, scored out
    # of sample (the holdout week), so prediction drift and performance have an honest baseline.
    lineage = deps.registry.get(model.name, model.version)["lineage"]
    shutil.copy(lineage["reference"], world.ws.reference_path)
    deps.deployer.start_canary(EndpointRef(world.endpoint), model, 10)  # on an empty endpoint it takes 100%
    return model


def _loop(world: World, box: Any, clock: Any) -> dict[str, Any]:
    import function_app
    from devhost.host import DevHost
    from retrain.endpoint import LocalEndpoint

    deps = box.retrain_deps
    feed = AuditFeed(box.store, clock)
    endpoint = LocalEndpoint(world.endpoint, box.data_dir / "endpoints.json", deps.registry, box.telemetry_store,
                             clock)
    host = DevHost(function_app.app, bus=box.bus, clock=clock)
    faults = _FaultInjector(world.opts.fault_canary, deps.deployer, feed)
    days = list(pd.date_range(world.start, world.end, freq="D", inclusive="left"))
    with endpoint:
        replay = Replay(world.traffic, endpoint.url, host, clock, box, label_lag=world.label_lag,
                        on_block=faults.poll)
        for day in _progress(days, world.opts.progress, f"replay {len(days)} days through the endpoint"):
            replay.day(day)
        host.advance_to(world.end.to_pydatetime())
        replay.settle()
        faults.poll()
        replay.close()
    feed.poll(full=True)  # anything recorded with an event time before the days the last polls read
    return {"replay": replay.stats, "events": feed.events, "faults": faults.injected}


class _FaultInjector:
    """Makes the Nth canary misbehave (a share of failing requests) so the rollback path runs for real."""

    def __init__(self, nth: int, deployer: Any, feed: AuditFeed) -> None:
        self.nth, self.deployer, self.feed, self.seen, self.injected = nth, deployer, feed, 0, []

    def poll(self) -> None:
        for event in self.feed.poll():
            if event.type != "mlops.canary.started.v1":
                continue
            self.seen += 1
            if self.seen == self.nth:
                candidate = event.data["candidate"]
                model = ModelVersion(candidate["name"], str(candidate["version"]))
                self.deployer.inject_fault(model, error_rate=0.25)
                self.injected.append({"model": str(model), "error_rate": 0.25, "at": event.time})


def _strategies(world: World, box: Any, champion: Any, scheduled: Scheduled | None,
                outcome: dict[str, Any]) -> dict[str, Any]:
    never = monthly_metric(world, champion, world.start, world.end)
    managed = served_metric(world, box)
    out = {"never": _strategy(never, 0),
           "managed": _strategy(managed, sum(1 for e in outcome["events"] if e.type == "mlops.retrain.started.v1"))}
    if scheduled is not None:
        while scheduled.retrains < len(months(world.start, world.end)) - 1:
            if scheduled.error:
                raise scheduled.error
            time.sleep(0.2)
        out["scheduled"] = _strategy(scheduled.monthly_metric(champion), scheduled.retrains)
    ordered = {name: out[name] for name in ("never", "scheduled", "managed") if name in out}
    ordered["_scored"] = scored_rows(world, box, champion, scheduled)  # for the targets; not in summary.json
    return ordered


def _strategy(monthly: dict[str, float | None], retrains: int) -> dict[str, Any]:
    values = [v for v in monthly.values() if v is not None]
    return {"monthly_metric": monthly, "mean_metric": sum(values) / len(values) if values else None,
            "retrains": retrains}


def _phase(title: str, work: Any) -> Any:
    started = time.perf_counter()
    print(f"• {title} ...", flush=True)
    result = work()
    print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    return result


def _progress(items: list, enabled: bool, title: str):
    if not enabled:
        print(f"• {title} ...", flush=True)
        return items
    from tqdm import tqdm

    return tqdm(items, desc=title, unit="day", ncols=100)
