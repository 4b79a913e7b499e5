"""What an operator waits for: the list APIs over HTTP and the dashboard in a real browser, on demo data.

    python -m benchmarks.operators --workspace out/demo/work     # after `make demo`: its monitors and data
    python -m benchmarks.operators --days 60                      # or a demo-like world made on the spot

The app runs under devhost on a free loopback port. Each list route is asked 21 times: `first_ms` is the first
answer (cold: adapters built, files opened), `median_ms` and `p95_ms` the other 20. The dashboard is loaded in
Debian's chromium through Playwright until the page says it is ready (tables filled, the timeline drawn): `cold` with
an empty browser cache (plotly.js, 4.6 MB, fetched), `warm` the median of 5 reloads. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

ROUTES = ("monitors", "checks?limit=50", "incidents?state=open", "runs", "deployments")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class _Env:
    def setenv(self, name: str, value: str) -> None:
        os.environ[name] = value


def host_for(args: argparse.Namespace):
    import bootstrap
    import function_app
    from core.clock import SystemClock
    from core.settings import Settings
    from devhost.host import DevHost

    if args.workspace:
        work = Path(args.workspace).absolute()
        os.environ.update(MLOPS_DATA_DIR=str(work / "data"), MLOPS_MONITORS_DIR=str(work / "monitors"))
        os.environ.setdefault("CHECK_SCHEDULE", "0 */5 * * * *")  # timers are declared, not run, here
        os.environ.setdefault("TRACK_SCHEDULE", "30 * * * * *")
        box = bootstrap.configure(Settings(), clock=SystemClock())
        host = DevHost(function_app.app, bus=box.bus, clock=box.clock, http_port=0,
                       keys_path=work / "data" / "devhost-keys.json")
        return host, host.stop
    from tests.e2e.world import build

    world = build(Path(tempfile.mkdtemp(prefix="bench-operators-")), _Env(), days=args.days)
    return world.host, world.close


def timed_get(url: str, key: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"x-functions-key": key}), timeout=60) as res:
        res.read()
    return (time.perf_counter() - started) * 1000


def lists(base: str, key: str, monitor: str) -> dict[str, dict[str, float]]:
    out = {}
    for route in (*ROUTES, f"monitors/{monitor}/timeline"):
        samples = [timed_get(base + route, key) for _ in range(21)]
        rest = sorted(samples[1:])
        out[route] = {"first_ms": round(samples[0], 1), "median_ms": round(statistics.median(rest), 1),
                      "p95_ms": round(rest[int(0.95 * (len(rest) - 1))], 1)}
    return out


def dashboard(base: str, key: str) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(profile, executable_path="/usr/bin/chromium", args=FLAGS,
                                                       headless=True)
        page = context.new_page()
        started = time.perf_counter()
        page.goto(f"{base}dashboard?code={key}")
        page.wait_for_selector("body[data-ready='true']", timeout=120_000)
        cold = time.perf_counter() - started
        warm = []
        for _ in range(5):
            started = time.perf_counter()
            page.reload()
            page.wait_for_selector("body[data-ready='true']", timeout=120_000)
            warm.append(time.perf_counter() - started)
        context.close()
    return {"cold_s": round(cold, 2), "warm_s": round(statistics.median(warm), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", help="a demo workspace (out/demo/work) instead of a made-up world")
    parser.add_argument("--days", type=int, default=60, help="days of the made-up world")
    args = parser.parse_args()
    host, close = host_for(args)
    try:
        import bootstrap

        box = bootstrap.container()
        monitor = box.specs.names()[0]
        base, key = f"http://127.0.0.1:{host.http_port}/api/", host.keys.function_key
        counts = {name: json.loads(urllib.request.urlopen(urllib.request.Request(
            base + name + "?limit=500", headers={"x-functions-key": key}), timeout=60).read())["count"]
            for name in ("checks", "incidents", "runs")}
        result = {"benchmark": "operators", "data": args.workspace or f"world of {args.days} days",
                  "counts": counts, "lists": lists(base, key, monitor), "dashboard": dashboard(base, key)}
    finally:
        close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
