"""python -m devhost [--app function_app:app] [--port 7071] [--clock real|demo|sim:START[@SPEED]] [--settings FILE]

Local settings ("Values" of local.settings.json) become environment variables, as with Core Tools;
variables already set in the environment win. Exits 0 after a clean shutdown on Ctrl-C or SIGTERM,
2 on a configuration error (naming the setting).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from core.clock import Clock, parse_clock
from core.errors import ConfigurationError, MlopsError
from core.localbus import SqliteBus, provision
from devhost.bindings import load_app
from devhost.host import DevHost
from devhost.keys import DEFAULT_KEYS_FILE

log = logging.getLogger("devhost")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m devhost", description=__doc__.splitlines()[0])
    p.add_argument("--app", default="function_app:app", help="module:attr of the FunctionApp")
    p.add_argument("--port", type=int, default=7071, help="HTTP port on 127.0.0.1 (0: any free port)")
    p.add_argument("--no-http", action="store_true", help="do not serve HTTP routes")
    p.add_argument("--clock", default=None,
                   help="real | demo[@SPEED] (where the demo's checks stopped) | sim:2013-04-01T00:00:00Z[@SPEED] "
                        "(default: MLOPS_CLOCK or real)")
    p.add_argument("--settings", type=Path, default=None, help="local settings file (default: local.settings.json)")
    p.add_argument("--host-json", type=Path, default=Path("host.json"), help="host.json with Service Bus settings")
    p.add_argument("--keys", type=Path, default=None, help="function keys file (default: MLOPS_DATA_DIR/"
                                                           f"{DEFAULT_KEYS_FILE})")
    p.add_argument("--grace", type=float, default=10.0, help="seconds an in-flight handler gets at shutdown")
    return p.parse_args(argv)


def load_settings_file(path: Path | None) -> None:
    """Copy the file's "Values" into the environment without overriding what is already set."""
    explicit = path is not None
    path = path or Path("local.settings.json")
    if not path.exists():
        if explicit:
            raise ConfigurationError(f"--settings {path}: no such file")
        return
    try:
        values = json.loads(path.read_text()).get("Values", {})
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise ConfigurationError(f"{path}: not a local settings file with a \"Values\" object: {exc}") from exc
    for name, value in values.items():
        if value is not None and value != "":
            os.environ.setdefault(name, str(value))


def share_clock(clock: Clock) -> None:
    """Hand the clock to the app's composition root, if it takes one, so functions and host agree on time.

    A ScaledClock made twice would start its simulated time twice, at different wall moments.
    """
    if importlib.util.find_spec("bootstrap") is None:
        return
    configure = getattr(importlib.import_module("bootstrap"), "configure", None)
    if callable(configure):
        configure(clock=clock)


def route_prefix(host_json: Path) -> str:
    try:
        doc = json.loads(host_json.read_text()) if host_json.exists() else {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read {host_json}: {exc}") from exc
    return str(doc.get("extensions", {}).get("http", {}).get("routePrefix", "api"))


def absolute_folders() -> None:
    """Relative folders in the settings are resolved once, here, against the directory devhost starts in."""
    for name in ("MLOPS_DATA_DIR", "MLOPS_MONITORS_DIR", "MLOPS_RETRAIN_CONFIG"):
        value = os.environ.get(name)
        if value:
            os.environ[name] = str(Path(value).expanduser().absolute())


def demo_clock(text: str, data_dir: Path) -> str:
    """'demo[@SPEED]' -> 'sim:START[@SPEED]': the simulated time where the demo's checks stopped, plus a day
    (its last labels have arrived), so checks, retrains and their labels line up with the demo's 2013 data."""
    from core.records import WATERMARK
    from core.state_sqlite import SqliteStateStore
    from core.types import iso, parse_time

    _, _, speed = text.partition("@")
    state = data_dir / "state.sqlite"
    if not state.exists():
        raise ConfigurationError(f"--clock demo: no {state}; run `make demo` first and point MLOPS_DATA_DIR at "
                                 "its data folder (out/demo/work/data)")
    store = SqliteStateStore(state)
    try:
        marks = [parse_time(doc.data["watermark"]) for _, doc in store.list(WATERMARK)]
    finally:
        store.close()
    if not marks:
        raise ConfigurationError(f"--clock demo: {state} holds no checked window yet (has the demo run there?)")
    start = max(marks) + timedelta(days=1)
    return f"sim:{iso(start)}" + (f"@{speed}" if speed else "")


def build(args: argparse.Namespace) -> DevHost:
    load_settings_file(args.settings)
    absolute_folders()
    data_dir = Path(os.environ.get("MLOPS_DATA_DIR") or ".local").absolute()
    clock_text = args.clock or os.environ.get("MLOPS_CLOCK") or "real"
    if clock_text.split("@")[0] == "demo":
        clock_text = demo_clock(clock_text, data_dir)
    clock = parse_clock(clock_text)
    os.environ["MLOPS_CLOCK"] = clock_text
    sys.path.insert(0, os.getcwd())
    app = load_app(args.app)
    share_clock(clock)
    bus = SqliteBus.from_host_json(data_dir / "bus.sqlite", args.host_json, clock=clock)
    provision(bus)
    return DevHost(app, bus=bus, clock=clock, keys_path=args.keys or data_dir / DEFAULT_KEYS_FILE,
                   http_port=None if args.no_http else args.port, route_prefix=route_prefix(args.host_json),
                   grace_s=args.grace)


def announce(host: DevHost) -> None:
    print(f"devhost: clock {os.environ.get('MLOPS_CLOCK')}, now {host.clock.now().isoformat()}", flush=True)
    if host.keys is not None:
        state = "generated" if host.keys.created else "from"
        print(f"devhost: function key ({state} {host.keys.path}): {host.keys.function_key}", flush=True)
        print(f"export KEY={host.keys.function_key}", flush=True)
    if host.http_port is not None:
        base = f"http://127.0.0.1:{host.http_port}/{'/'.join(host.gateway.prefix)}".rstrip("/")
        for fn in host.http_functions:
            methods = ",".join(sorted(fn.methods)) if fn.methods else "ANY"
            print(f"  {fn.name}: [{methods}] {base}/{fn.route.template} ({fn.auth_level})", flush=True)


def announce_monitors(clock: Clock) -> None:
    """Which monitors will run, which will not and why, and how far behind the clock each one is."""
    import bootstrap
    from core.records import get_watermark
    from monitors.rebaseline import not_ready

    box = bootstrap.container()
    specs = box.specs.all()
    ready = []
    for spec in specs:
        problem = not_ready(spec, box.store, Path(box.settings.monitors_dir))
        if problem:
            print(f"devhost: monitor {spec.name} is not scheduled: {problem}", flush=True)
            continue
        ready.append(spec)
        mark = get_watermark(box.store, spec.name)
        behind = int((clock.now() - spec.window.lateness - mark) / spec.window.size) if mark else 0
        if behind > 1:
            print(f"devhost: monitor {spec.name} has checked up to {mark.isoformat()}, {behind} windows behind the "
                  "clock: the timer will catch up on them (bounded per tick); --clock demo runs on the demo's "
                  "time instead", flush=True)
    for path, error in box.specs.errors.items():
        print(f"devhost: spec {path} is broken: {error.splitlines()[0]}", flush=True)
    if not ready:
        print(f"devhost: no monitor will run. To add one: `make demo`, then `make devhost "
              f"WORKSPACE=out/demo/work` for the demo's; or write a spec into {box.settings.monitors_dir} "
              "(`.venv/bin/python -m monitors init --reference your-reference.parquet --out "
              f"{box.settings.monitors_dir}/your-monitor.yaml`; see docs/monitors.md).", flush=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        host = build(args)
    except (ConfigurationError, OSError) as exc:
        print(f"devhost: error: {exc}", file=sys.stderr)
        return 2
    announce(host)
    if args.app == "function_app:app":  # this service's app: say which monitors will run
        try:
            announce_monitors(host.clock)
        except MlopsError as exc:  # the functions will name it again when called; devhost still serves
            print(f"devhost: cannot read the monitors: {exc}", flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: host.request_stop())
    try:
        host.serve_forever()
    finally:
        host.bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
