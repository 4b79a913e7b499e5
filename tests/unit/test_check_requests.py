"""Asking for a check by hand: a window already checked says so; force re-runs it for real (through the bus, the
claim and the handler); a paused monitor, or one whose reference data is missing, is refused with the reason."""
from dataclasses import replace

import numpy as np
import pytest

from core.errors import ValidationFailed
from core.events import decode, event_id
from core.localbus import SqliteBus, SqliteBusPublisher, provision
from core.records import CHECK
from core.routing import TOPIC
from core.types import Window
from monitors import windows
from monitors.check import request_check, run_check
from monitors.rebaseline import not_ready
from tests.unit.test_check_handler import DAY, SPEC, T0, deps, traffic  # noqa: F401  (deps is a fixture)


@pytest.fixture
def bussed(deps, tmp_path):  # noqa: F811
    bus = SqliteBus(tmp_path / "bus.sqlite", clock=deps.clock)
    provision(bus)
    return replace(deps, publisher=SqliteBusPublisher(bus)), bus


def deliver(bus, check_deps):
    messages = bus.receive(f"{TOPIC}/subscriptions/run-check", max_messages=5)
    results = [run_check(decode(m.message.body), check_deps) for m in messages]
    for m in messages:
        bus.complete(m.lock_token)
    return results


def test_a_checked_window_is_not_requested_again_unless_forced(bussed):
    deps, bus = bussed  # noqa: F811
    window = Window(T0 + 5 * DAY, T0 + 6 * DAY)
    deps.telemetry.frames[window.start] = traffic(np.random.default_rng(1), 400)
    assert request_check("flights-delay", deps, window=window)["state"] == "requested"
    (first,) = deliver(bus, deps)
    assert windows.passed(deps.store, "flights-delay", window) and first["rows"] == 400

    assert request_check("flights-delay", deps, window=window)["state"] == "done"  # already checked: nothing sent
    assert deliver(bus, deps) == []

    deps.telemetry.frames[window.start] = traffic(np.random.default_rng(2), 700, shift=300.0)  # late data arrived
    forced = request_check("flights-delay", deps, window=window, force=True)
    assert forced["state"] == "requested"
    assert forced["event_id"] != event_id("check.requested", "flights-delay", window.key())  # not a bus duplicate
    assert not windows.passed(deps.store, "flights-delay", window)
    (again,) = deliver(bus, deps)
    assert again["rows"] == 700 and again["status"] == "breached" and again["reason"] == "http (re-run)"
    assert deps.store.get(CHECK, first["check_id"]).data["rows"] == 700  # the record is the new run's
    assert windows.passed(deps.store, "flights-delay", window)


def test_a_paused_monitor_or_a_missing_reference_is_refused_with_the_reason(deps, tmp_path):  # noqa: F811
    spec = deps.specs.get("flights-delay")
    assert not_ready(spec, deps.store, tmp_path) is None
    (tmp_path / "flights.yaml").write_text(SPEC.replace("name: flights-delay", "name: flights-delay\nenabled: false"))
    with pytest.raises(ValidationFailed, match="disabled in its spec"):
        request_check("flights-delay", deps, window=Window(T0, T0 + DAY))
    (tmp_path / "flights.yaml").write_text(SPEC)
    (tmp_path / "ref.parquet").unlink()
    with pytest.raises(ValidationFailed, match="ref.parquet does not exist"):
        request_check("flights-delay", deps, window=Window(T0, T0 + DAY))
    assert deps.publisher.published == []
