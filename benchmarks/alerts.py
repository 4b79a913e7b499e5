"""False alarms and detection of the default monitor settings on synthetic histories (not the flights).

`python -m benchmarks.alerts [--days 270] [--seed 0]` replays daily windows of a synthetic scored, labelled
history through the product's own evaluators and alert policy (a spec with every default) and prints one
JSON line per scenario: windows breached per signal, incidents, notifications (opened + resolved), and for
drifted scenarios the days from the change to the first incident.

Scenarios (all with day-to-day variation inside the reference itself, as real traffic has):
- `stable`: the same process as the reference for the whole replay: every incident is a false alarm;
- `weekly`: the same, plus a weekly cycle in traffic mix and volume;
- `covariate`: from mid-replay a feature's distribution moves (the model still right: performance holds);
- `concept`: from mid-replay the outcome's relation to a feature flips sign (performance drops);
- `regression`: a regression model (prediction kind `value`, RMSE) on the same stable process.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

SPEC = """\
name: synthetic
endpoint: {name: synthetic}
model: {name: synthetic}
features:
  - {name: x1, kind: numeric}
  - {name: x2, kind: numeric}
  - {name: x3, kind: numeric}
  - {name: segment, kind: categorical}
  - {name: channel, kind: categorical}
prediction: {column: score, kind: score}
label: {column: label, task: classification, lag: 1d}
reference: {uri: reference.parquet}
"""
START = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Scenario:
    name: str
    weekly: bool = False
    covariate: bool = False
    concept: bool = False
    regression: bool = False


SCENARIOS = (Scenario("stable"), Scenario("weekly", weekly=True), Scenario("covariate", covariate=True),
             Scenario("concept", concept=True), Scenario("regression", regression=True))
COEF = np.array([0.9, -0.6, 0.4])


def history(scenario: Scenario, days: int, change: int, rng: np.random.Generator, per_day: int = 600) -> pd.DataFrame:
    """One row per request: time, features, the fixed model's score, the label drawn from the true probability."""
    parts = []
    for day in range(days):
        level = rng.normal(0, 0.25, 3)  # each day's own weather: a shared shift of the features
        rows = per_day if not scenario.weekly else int(per_day * (0.6 if day % 7 in (5, 6) else 1.15))
        x = rng.normal(level, 1.0, (rows, 3))
        segment_p = [0.5, 0.3, 0.2] if not (scenario.weekly and day % 7 in (5, 6)) else [0.3, 0.3, 0.4]
        segment = rng.choice(["a", "b", "c"], rows, p=segment_p)
        late = day >= change
        if scenario.covariate and late:
            x[:, 0] += 1.2  # the inputs move; the model is still right about them
        truth = x @ COEF + np.where(segment == "c", 0.5, 0.0) - 0.8
        if scenario.concept and late:
            truth = x @ (COEF * [-1, 1, 1]) + np.where(segment == "c", 0.5, 0.0) - 0.8  # the world changed
        score = 1 / (1 + np.exp(-(x @ COEF + np.where(segment == "c", 0.5, 0.0) - 0.8)))  # the model did not
        label = (rng.uniform(size=rows) < 1 / (1 + np.exp(-truth))).astype(int)
        if scenario.regression:  # a delay in minutes: the model predicts its expectation
            score, label = 20 * score, 20 * (1 / (1 + np.exp(-truth))) + rng.normal(0, 4, rows)
        times = START + timedelta(days=day) + pd.to_timedelta(np.sort(rng.uniform(0, 86400, rows)), unit="s")
        parts.append(pd.DataFrame({"time": times, "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "segment": segment,
                                   "channel": rng.choice(["web", "app"], rows), "score": score, "label": label,
                                   "status_code": 200, "latency_ms": rng.gamma(4, 10, rows)}))
    return pd.concat(parts, ignore_index=True)


def replay(scenario: Scenario, days: int, seed: int) -> dict:
    from core.state_sqlite import SqliteStateStore
    from core.types import EndpointRef, TelemetryBatch, Window
    from monitors.alerts import AlertPolicy
    from monitors.signals.suite import build_suite, fit_suite
    from monitors.spec import parse_spec

    rng = np.random.default_rng(seed)
    reference_days, change = 60, 60 + days // 2
    frame = history(scenario, reference_days + days, change, rng)
    cut = START + timedelta(days=reference_days)
    reference = frame[frame["time"] < cut]
    text = SPEC.replace("{column: score, kind: score}", "{column: score, kind: value}").replace(
        "task: classification", "task: regression") if scenario.regression else SPEC
    spec = parse_spec(text)
    with tempfile.TemporaryDirectory() as tmp:
        suite = fit_suite(build_suite(spec, calibration_dir=Path(tmp) / "nulls"), reference, "synthetic")
        store = SqliteStateStore(Path(tmp) / "state.sqlite")
        policy, breaches, changes = AlertPolicy(spec.alert), {}, []
        by_day = dict(list(frame.groupby((frame["time"] - pd.Timestamp(START)).dt.days)))
        for day in range(reference_days, reference_days + days):
            window = Window(START + timedelta(days=day), START + timedelta(days=day + 1))
            batch = TelemetryBatch(EndpointRef("synthetic"), window, by_day[day])
            findings = [f for e in suite.current for f in e.evaluate(batch)]
            findings += suite.performance.evaluate(batch)  # labels arrive whole in this replay: no lag needed
            for signal in sorted({f.signal for f in findings if f.breached}):
                breaches[signal] = breaches.get(signal, 0) + 1
            for c in policy.apply(store, "synthetic", window, findings, check_id=f"c{day}"):
                changes.append((day, c.status, c.signals))
        store.close()
    opened = [d for d, s, _ in changes if s == "opened"]
    spans, start_day = [], None
    for d, s, sig in changes:
        if s == "opened":
            start_day = (d - reference_days, sig)
        elif s == "resolved" and start_day is not None:
            spans.append([start_day[0], d - reference_days, start_day[1]])
            start_day = None
    if start_day is not None:
        spans.append([start_day[0], None, start_day[1]])
    before = [d for d in opened if d < change]
    after = [d for d in opened if d >= change]
    drifted = scenario.covariate or scenario.concept
    return {"scenario": scenario.name, "days": days, "seed": seed, "windows_breached": breaches,
            "incidents": len(opened), "notifications": sum(s in ("opened", "resolved") for _, s, _ in changes),
            "false_alarm_incidents": len(before) if drifted else len(opened),
            "days_to_detect": (after[0] - change) if drifted and after else None,
            "signals_at_detection": next((sig for d, s, sig in changes if s == "opened" and d >= change), None)
            if drifted else None, "change_day": change - reference_days if drifted else None,
            "incidents_by_day": spans}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.alerts", description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=270)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenario", choices=[s.name for s in SCENARIOS])
    args = parser.parse_args(argv)
    for scenario in SCENARIOS:
        if args.scenario in (None, scenario.name):
            print(json.dumps(replay(scenario, args.days, args.seed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
