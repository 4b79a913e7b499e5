"""python -m chaos [--seed 7] [--kills 30] [--min-windows 0] [--speed 300] [--workdir out/chaos]

Runs the service under devhost on a simulated clock with a workload (two monitored endpoints, traffic that
drifts in episodes, retrains on drift and by HTTP, canaries some of which fail), SIGKILLs the host at seeded
random moments (cycling through mid-check, mid-retrain, mid-deploy and mid-publish, as the stores show them),
restarts it each time, then drains and checks the invariants (chaos/invariants.py). Prints one JSON line:

    {"kills": N, "violations": [...], "windows_due": N, "windows_checked": N, "runs": N, "runs_terminal": N,
     "dead_lettered": N, "wall_s": S, ...}

and exits 1 on any violation (2 on a usage error). The workdir keeps every host's log for a post-mortem.
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

from chaos import invariants, probe
from chaos.host import Host, SimTime
from chaos.traffic import TrafficWriter
from chaos.world import CHECKED, RETRAINED, START, World, build

TARGETS = ("mid-check", "mid-retrain", "mid-deploy", "mid-publish", None)  # None: whenever the dice say
MONITORS = {f"{name}-monitor": (START, timedelta(minutes=20), timedelta(minutes=2)) for name in (RETRAINED, CHECKED)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--kills", type=int, default=30, help="SIGKILLs at least (every moment is hit at least once)")
    p.add_argument("--min-windows", type=int, default=0,
                   help="keep running (and killing) until at least this many windows are due, however fast the "
                        "machine gets through the kills")
    p.add_argument("--speed", type=float, default=300.0, help="simulated seconds per wall second")
    p.add_argument("--workdir", type=Path, default=Path("out/chaos"))
    p.add_argument("--drain-s", type=float, default=300.0, help="wall seconds the drain may take at most")
    p.add_argument("--any-moment", action="store_true",
                   help="do not require a kill in each of mid-check, mid-retrain, mid-deploy, mid-publish")
    p.add_argument("--verbose", action="store_true", help="progress on stderr")
    args = p.parse_args(argv)
    if args.kills < 1 or args.speed <= 0 or args.drain_s <= 0 or args.min_windows < 0:
        p.error("--kills, --speed and --drain-s must be positive, --min-windows at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    result = run(args)
    result["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, sort_keys=False), flush=True)
    return 1 if result["violations"] else 0


def run(args: argparse.Namespace) -> dict:
    shutil.rmtree(args.workdir, ignore_errors=True)
    world = build(args.workdir.absolute(), args.seed)
    dice = random.Random(args.seed)
    clock = SimTime(world, START, args.speed)
    host = Host(world, _free_port())
    traffic = TrafficWriter(world.data, world.clock_file, args.seed)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.verbose else (lambda *a: None)
    violations: list[str] = []
    hits: dict[str, int] = {m: 0 for m in probe.MOMENTS}
    kills = 0
    try:
        host.start()
        if not host.ready():
            return {"kills": 0, "violations": [f"devhost did not start: see {world.root}/devhost-000.log"],
                    "windows_due": 0, "windows_checked": 0, "runs": 0, "runs_terminal": 0, "dead_lettered": 0}
        clock.run()
        traffic.start()
        requests = Requests(host)
        targets = itertools.cycle(TARGETS)
        since = clock.now()
        while _more(args, kills, hits, clock.now()):
            requests.maybe(clock.now())
            time.sleep(dice.uniform(1.0, 4.0))  # time to get some work done, and to get into trouble
            want = next(targets)
            if want is not None and (hits[want] == 0 or dice.random() < 0.7):
                # A moment not hit yet may need a run to get through training first (kills every few seconds
                # would stop every one): wait longer for it, as long as a retrain takes on a busy machine.
                _wait_for(world, want, since, timeout_s=90.0 if hits[want] == 0 and not args.any_moment else 4.0)
            moments = probe.moments(world.data, since)
            host.kill()
            kills += 1
            for moment in moments:
                hits[moment] += 1
            violations += [f"after kill {kills}: {v}" for v in invariants.traffic_violations(world.data)]
            say(f"kill {kills} at {clock.now():%H:%M} ({', '.join(sorted(moments)) or 'idle'})")
            since = clock.now()
            host.start()
            if not host.ready():
                violations.append(f"devhost did not come back after kill {kills}: see {world.root}")
                break
        traffic.stop()
        say(f"drain from {clock.now():%H:%M}")
        violations += _drain(world, host, clock, args.drain_s)
        host.stop()
        now = clock.now()
        result = invariants.check(world.data, MONITORS, now)
        result["violations"] = violations + result["violations"]
        missed = [m for m, n in hits.items() if n == 0]
        if missed and not args.any_moment:
            result["violations"].append(f"no kill landed {', '.join(missed)}")
        return {"kills": kills, **result, "kills_by_moment": hits, "seed": args.seed,
                "simulated_hours": round((now - START).total_seconds() / 3600, 1)}
    finally:
        traffic.stop()
        clock.close()
        host.cleanup()


class Requests:
    """Retrains asked for over HTTP with an Idempotency-Key, each retried (across kills) until accepted."""

    def __init__(self, host: Host) -> None:
        self.host, self.sent, self.pending = host, 0, None

    def maybe(self, now) -> None:
        due = int((now - START + timedelta(hours=2, minutes=15)) / timedelta(hours=3))  # at 0:45, 3:45, 6:45...
        if self.pending is None and self.sent < due:
            self.pending, self.sent = f"chaos-{self.sent}", self.sent + 1
        if self.pending is not None and self._post(self.pending):
            self.pending = None

    def _post(self, key: str) -> bool:
        from devhost.keys import DEFAULT_KEYS_FILE, load_or_create

        keys = load_or_create(self.host.world.data / DEFAULT_KEYS_FILE)
        body = json.dumps({"endpoint": RETRAINED, "reason": "scheduled refresh"}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.host.port}/api/retrain", data=body, method="POST",
                                         headers={"Content-Type": "application/json", "Idempotency-Key": key,
                                                  "x-functions-key": keys.function_key})
        try:
            with urllib.request.urlopen(request, timeout=10) as res:
                return res.status in (200, 202)
        except (urllib.error.URLError, OSError):
            return False


def _wait_for(world: World, moment: str, since, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if moment in probe.moments(world.data, since):
            return True
        time.sleep(0.004)
    return False


def _more(args: argparse.Namespace, kills: int, hits: dict[str, int], now) -> bool:
    """Whether the kill loop goes on: too few kills, a moment not hit yet, or too few windows due so far."""
    if kills < args.kills or len(invariants.due_windows(MONITORS, now)) < args.min_windows:
        return True
    return not args.any_moment and min(hits.values()) == 0 and kills < 3 * args.kills


def _drain(world: World, host: Host, clock: SimTime, limit_s: float) -> list[str]:
    """No traffic any more; time moves a minute at a time whenever no message waits for a worker, until nothing
    is left: no message unsettled or scheduled, no run active (runs reach their end or their deadline)."""
    clock.pause()
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if not host.alive():
            return ["devhost died during the drain"]
        now_us = _micros(clock.now())
        left = probe.pending_messages(world.data, now_us)
        if left["active"]:
            continue  # visible work waits for a worker: let it run before time moves
        if not any(left.values()) and not probe.active_runs(world.data) and _windows_settled(world, clock.now()):
            return []
        # A locked message is either being handled (its lock is renewed) or held by a host that was killed:
        # only time expires that lock, so time moves while messages are locked, as it would in production.
        clock.advance(timedelta(minutes=1))
    left = probe.pending_messages(world.data, _micros(clock.now()))
    return [f"the service did not drain within {limit_s:.0f} s: {left}, {probe.active_runs(world.data)} run(s) active"]


def _windows_settled(world: World, now) -> bool:
    """Every window record settled, and every window the timer has had a tick to ask for has a record."""
    records = probe.windows(world.data)
    if any(w.get("state") not in ("done", "failed") for w in records):
        return False
    asked = {(w["monitor"], w["window"]["start"]) for w in records}
    return all(key in asked for key in invariants.due_windows(MONITORS, now))


def _micros(moment) -> int:
    return int(moment.timestamp() * 1_000_000)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
