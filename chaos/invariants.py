"""What must hold after the drain, read from the stores (state, bus, endpoint state), never from the processes:

- every due window of every monitor checked exactly once (done, announced once; once more for a late re-check);
- every retrain trigger started at most one run, runs of one endpoint never overlapped, every run is terminal,
  and every run moved only along the state machine's transitions;
- traffic sums to 100 with at most one canary (also sampled after every kill), no deployment operation left open;
- no message lost: nothing left unsettled on the bus, every dead letter has a reason, and every audited event was
  processed or dead-lettered by each consumer subscribed to its type.
"""
from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from chaos import probe
from core.routing import SUBSCRIPTIONS
from core.types import Window, parse_time


def traffic_violations(data: Path) -> list[str]:
    try:
        state = json.loads((data / "endpoints.json").read_text())
    except FileNotFoundError:
        return []
    except ValueError as exc:
        return [f"endpoints.json is not readable JSON: {exc}"]
    found = []
    for name, ep in (state.get("endpoints") or {}).items():
        shares = {k: v for k, v in (ep.get("traffic") or {}).items() if v}
        if shares and sum(shares.values()) != 100:
            found.append(f"endpoint {name}: traffic {shares} sums to {sum(shares.values())}")
        if len(shares) > 2:
            found.append(f"endpoint {name}: {len(shares)} deployments take traffic (at most a champion and a canary)")
    return found


def check(data: Path, monitors: dict[str, tuple[datetime, timedelta, timedelta]], now: datetime) -> dict[str, Any]:
    """`monitors`: name -> (grid origin, window size, lateness). Returns counts and the list of violations."""
    violations: list[str] = []
    due, checked = _windows(data, monitors, now, violations)
    runs, terminal = _runs(data, violations)
    violations += [f"at the end: {v}" for v in traffic_violations(data)]
    state = _endpoint_state(data)
    for name, ep in state.items():
        if ep.get("pending"):
            violations.append(f"endpoint {name}: a deployment operation was left unfinished")
        if len([v for v in (ep.get("traffic") or {}).values() if v]) > 1:
            violations.append(f"endpoint {name}: a canary still takes traffic with no run watching it")
    dead = _messages(data, now, violations)
    return {"violations": violations, "windows_due": due, "windows_checked": checked, "runs": runs,
            "runs_terminal": terminal, "dead_lettered": dead}


TICK = timedelta(minutes=5)  # the check timer's period: a window is asked for at the first tick after it is due


def due_windows(monitors: dict, now: datetime) -> list[tuple[str, str]]:
    """(monitor, window start) of every grid window the timer has had a tick to ask for by `now`."""
    found = []
    for monitor, (origin, size, lateness) in monitors.items():
        start = origin
        while start + size + lateness + TICK <= now:
            found.append((monitor, iso_key(start)))
            start += size
    return found


def _windows(data: Path, monitors: dict, now: datetime, violations: list[str]) -> tuple[int, int]:
    records = {(w["monitor"], w["window"]["start"]): w for w in probe.windows(data)}
    checks = {(c["monitor"], c["window"]["start"]): c for c in probe.docs(data, "check")}
    due = checked = 0
    for monitor, start_text in due_windows(monitors, now):
        due += 1
        window = Window(parse_time(start_text), parse_time(start_text) + monitors[monitor][1])
        rec, doc = records.get((monitor, start_text)), checks.get((monitor, start_text))
        expected = 1 + (1 if rec and rec.get("recheck") == "done" else 0)
        if rec is None or rec.get("state") != "done":
            violations.append(f"{monitor} {window.key()}: not checked (state {rec and rec.get('state')})")
        elif rec.get("completions") != expected:
            violations.append(f"{monitor} {window.key()}: finished {rec.get('completions')} times, expected {expected}")
        elif doc is None or doc.get("status") not in ("ok", "breached", "empty"):
            violations.append(f"{monitor} {window.key()}: done without a check record")
        else:
            checked += 1
    return due, checked


def iso_key(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _runs(data: Path, violations: list[str]) -> tuple[int, int]:
    from retrain.runs import TRANSITIONS, Phase

    runs = probe.runs(data)
    terminal = 0
    by_trigger: dict[str, list[str]] = {}
    spans: dict[str, list[tuple[datetime, datetime, str]]] = {}
    for run in runs:
        state = Phase(run["state"])
        terminal += state.terminal
        if not state.terminal:
            violations.append(f"run {run['run_id']} is still {state.value}")
        history = run.get("history", [])
        for before, after in zip(history, history[1:], strict=False):
            if Phase(after["state"]) not in TRANSITIONS.get(Phase(before["state"]), ()):
                violations.append(f"run {run['run_id']}: {before['state']} -> {after['state']} is not a transition")
        trigger = run.get("trigger") or {}
        identity = trigger.get("event_id") if trigger.get("kind") == "drift" else run.get("idempotency_key")
        by_trigger.setdefault(f"{trigger.get('kind')}:{identity}", []).append(run["run_id"])
        if run.get("submitted_at"):
            end = parse_time(run["finished_at"]) if run.get("finished_at") else datetime.max.replace(
                tzinfo=parse_time(run["submitted_at"]).tzinfo)
            spans.setdefault(run["endpoint"], []).append((parse_time(run["submitted_at"]), end, run["run_id"]))
    for trigger, ids in by_trigger.items():
        if len(ids) > 1:
            violations.append(f"trigger {trigger} started {len(ids)} runs: {ids}")
    for endpoint, items in spans.items():
        items.sort()
        for (_, end, first), (start, _, second) in zip(items, items[1:], strict=False):
            if start < end:
                violations.append(f"endpoint {endpoint}: runs {first} and {second} were active at once")
    return len(runs), terminal


def _endpoint_state(data: Path) -> dict[str, Any]:
    try:
        return json.loads((data / "endpoints.json").read_text()).get("endpoints") or {}
    except (OSError, ValueError):
        return {}


def _messages(data: Path, now: datetime, violations: list[str]) -> int:
    from core.types import utc

    now_us = int((utc(now) - datetime(1970, 1, 1, tzinfo=now.tzinfo)).total_seconds() * 1_000_000)
    left = probe.pending_messages(data, now_us)
    if any(left.values()):
        violations.append(f"messages left unsettled on the bus after the drain: {left}")
    with closing(sqlite3.connect(f"{(data / 'bus.sqlite').as_uri()}?mode=ro", uri=True)) as db:
        dead = db.execute("SELECT entity, message_id, dl_reason, dl_description FROM messages WHERE dead = 1"
                          ).fetchall()
    with closing(sqlite3.connect(f"{(data / 'state.sqlite').as_uri()}?mode=ro", uri=True)) as db:
        inbox = {key for (key,) in db.execute("SELECT key FROM docs WHERE kind = 'inbox'")}
    for entity, message_id, reason, description in dead:
        if not reason or not (description or "").strip():
            violations.append(f"dead letter {message_id} on {entity} has no reason")
    buried = {(entity.rpartition("/")[2], message_id) for entity, message_id, _, _ in dead}
    for event in probe.docs(data, "audit"):
        for name, subjects in SUBSCRIPTIONS.items():
            if name == "audit" or (subjects and event["type"] not in subjects):
                continue
            if f"{name}/{event['id']}" not in inbox and (name, event["id"]) not in buried:
                violations.append(f"event {event['type']} {event['id']} never reached consumer {name}")
    return len(dead)
