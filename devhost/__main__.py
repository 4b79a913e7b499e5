"""python -m devhost [--app function_app:app] [--port 7071] [--clock real|sim:START[@SPEED]] [--settings FILE]

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
from pathlib import Path

from core.clock import Clock, parse_clock
from core.errors import ConfigurationError
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
                   help="real | sim:2013-04-01T00:00:00Z[@SPEED] (default: MLOPS_CLOCK or real)")
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


def build(args: argparse.Namespace) -> DevHost:
    load_settings_file(args.settings)
    clock_text = args.clock or os.environ.get("MLOPS_CLOCK") or "real"
    clock = parse_clock(clock_text)
    os.environ["MLOPS_CLOCK"] = clock_text
    sys.path.insert(0, os.getcwd())
    app = load_app(args.app)
    share_clock(clock)
    data_dir = Path(os.environ.get("MLOPS_DATA_DIR") or ".local")
    bus = SqliteBus.from_host_json(data_dir / "bus.sqlite", args.host_json, clock=clock)
    provision(bus)
    return DevHost(app, bus=bus, clock=clock, keys_path=args.keys or data_dir / DEFAULT_KEYS_FILE,
                   http_port=None if args.no_http else args.port, route_prefix=route_prefix(args.host_json),
                   grace_s=args.grace)


def announce(host: DevHost) -> None:
    if host.keys is not None:
        state = "generated" if host.keys.created else "from"
        print(f"devhost: function key ({state} {host.keys.path}): {host.keys.function_key}", flush=True)
    if host.http_port is not None:
        base = f"http://127.0.0.1:{host.http_port}/{'/'.join(host.gateway.prefix)}".rstrip("/")
        for fn in host.http_functions:
            methods = ",".join(sorted(fn.methods)) if fn.methods else "ANY"
            print(f"  {fn.name}: [{methods}] {base}/{fn.route.template} ({fn.auth_level})", flush=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        host = build(args)
    except (ConfigurationError, OSError) as exc:
        print(f"devhost: error: {exc}", file=sys.stderr)
        return 2
    announce(host)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: host.request_stop())
    try:
        host.serve_forever()
    finally:
        host.bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
