"""Regression tests for the lost and stuck windows of issue #11, each through the real consumer path: devhost drives
the function app's timer, Service Bus trigger (functions/_bus.consume) and HTTP routes over the SQLite bus and
state, on a simulated clock. Only the telemetry source is switched at the network edge."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from core.events import event_id
from core.records import CHECK, INCIDENT, already_processed, get_watermark
from core.routing import TOPIC
from core.types import Window
from monitors import windows
from tests.service import HOUR, make_world

T0 = datetime(2024, 3, 1, 0, 1, tzinfo=UTC)
MONITOR = "flights-delay"
RUN_CHECK = f"{TOPIC}/subscriptions/run-check"
LATEST = Window(datetime(2024, 2, 29, 23, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))  # due at T0 + 9 min


@pytest.fixture
def world(tmp_path, monkeypatch):
    import bootstrap
    from core.settings import Settings

    made = make_world(tmp_path, monkeypatch, start=T0)
    made.write_traffic(T0 - 30 * HOUR, 30)  # up to T0: later hours are written by the tests that need them
    yield made
    made.host.stop()
    bootstrap.configure(Settings())


def post_check(world, window, **extra):
    body = {"monitor": MONITOR, "window": {"start": window.start.isoformat(), "end": window.end.isoformat()}, **extra}
    res = world.host.call_http("POST", "/api/checks", headers={"x-functions-key": world.host.keys.function_key},
                               body=json.dumps(body).encode())
    return res.status_code, json.loads(res.get_body())


def record(world, window):
    return windows.load(world.box.store, MONITOR, window)


def test_a_window_held_by_another_delivery_comes_back_instead_of_being_marked_processed(world):
    """Was: run_check returned None on a held claim and consume recorded the message as processed, so the
    window was never checked once its holder died."""
    world.clock.set(T0 + timedelta(minutes=10))
    world.host.fire_due_timers()  # the tick asks for the latest window (not delivered yet)
    (message,) = world.box.bus.receive(RUN_CHECK)
    world.box.bus.abandon(message.lock_token)  # back on the subscription, as if never taken
    now = world.clock.now()
    windows.claim(world.box.store, (MONITOR, LATEST), "a-message-whose-process-died", now, timedelta(minutes=10))
    world.host.drain()
    assert not already_processed(world.box.store, "run-check", message.message.message_id)
    assert world.box.bus.counts(RUN_CHECK)["scheduled"] == 1  # it comes back when the dead holder's lease ends
    assert record(world, LATEST).state == windows.RUNNING and not world.source.computed
    world.advance(timedelta(minutes=11))
    assert record(world, LATEST).state == windows.DONE and world.source.computed[LATEST] == 1
    assert already_processed(world.box.store, "run-check", message.message.message_id)


def test_a_failing_window_is_given_up_after_k_attempts_and_an_operator_reruns_it(world):
    """Was: one window failing for good blocked its monitor for ever (retried every tick, watermark stuck)."""
    world.source.broken.add(LATEST)
    world.advance(timedelta(minutes=10))  # the tick, then every retry with its backoff
    world.advance(timedelta(minutes=5))
    rec = record(world, LATEST)
    assert rec.state == windows.FAILED and rec.attempts == 3 and "ZeroDivisionError" in rec.errors[-1]
    check_id = event_id("check", MONITOR, LATEST.key())
    failed = world.box.store.get(CHECK, check_id).data
    assert failed["status"] == "failed" and failed["attempts"] == 3 and "monitors retry" in failed["retry"]
    incident = world.box.store.get(INCIDENT, failed["incidents"][0]["incident_id"]).data
    assert incident["signal"] == "check_failed" and incident["status"] == "open"
    assert get_watermark(world.box.store, MONITOR) == LATEST.end  # the monitor moved on
    world.advance(timedelta(hours=1))  # the next window is checked as usual
    nxt = Window(LATEST.end, LATEST.end + HOUR)
    assert record(world, nxt).state == windows.DONE and get_watermark(world.box.store, MONITOR) == nxt.end

    world.source.broken.clear()  # the operator fixed the cause, and re-runs the window
    from monitors.cli import main

    span = f"{LATEST.start.isoformat()}/{LATEST.end.isoformat()}"
    assert main(["retry", "--monitor", MONITOR, "--window", span]) == 0
    world.host.run_until_idle()
    rec = record(world, LATEST)
    assert rec.state == windows.DONE and rec.generation == 1 and world.source.computed[LATEST] == 1
    assert world.box.store.get(CHECK, check_id).data["status"] in ("ok", "breached")
    assert world.box.store.get(INCIDENT, incident["incident_id"]).data["status"] == "resolved"


def test_after_a_dead_letter_a_re_request_runs_again_under_a_new_id(world):
    """Was: the re-sent request had the dead-lettered one's id and was dropped as a duplicate (HTTP said 202)."""
    world.source.down = True
    world.advance(timedelta(minutes=12))  # the ticks and five deliveries each, 5 s .. 40 s apart
    (dead,) = [d for d in world.dead_letters() if d.message.message_id == windows.request_id(MONITOR, LATEST)]
    assert "TelemetryUnavailable: Log Analytics answered 503" in dead.description
    world.source.down = False
    status, answer = post_check(world, LATEST)
    assert status == 202 and answer["status"] == "requested" and answer["event_id"] != dead.message.message_id
    world.host.run_until_idle()
    assert record(world, LATEST).state == windows.DONE and world.source.computed[LATEST] == 1


def test_an_http_check_of_an_old_window_never_moves_the_watermark_back(world):
    """Was: on a new monitor, a check of a window a year old set the watermark there and the next tick queued
    hundreds of windows."""
    old = Window(datetime(2024, 2, 1, 5, tzinfo=UTC), datetime(2024, 2, 1, 6, tzinfo=UTC))
    world.write_traffic(old.start, 1, seed=3)
    status, _ = post_check(world, old)
    world.host.drain()
    assert status == 202 and record(world, old).state == windows.DONE
    assert get_watermark(world.box.store, MONITOR) is None  # the timer's, not an ad-hoc check's
    tick = world.box.schedule_checks()
    assert len(tick) == 1 and get_watermark(world.box.store, MONITOR) == datetime(2024, 2, 29, 22, tzinfo=UTC)


def test_late_telemetry_is_checked_again_once_its_lateness_has_passed(world):
    """Was: a window checked right after an outage with 0 of its rows stayed recorded as empty."""
    world.write_traffic(T0.replace(minute=0), 3, seed=8)
    world.advance(timedelta(hours=3, minutes=10))  # ordinary windows: the monitor's usual row count
    late = Window(T0.replace(minute=0) + 3 * HOUR, T0.replace(minute=0) + 4 * HOUR)
    world.advance(timedelta(hours=1))  # its rows are not there when it is due
    first = world.box.store.get(CHECK, event_id("check", MONITOR, late.key())).data
    assert first["rows"] == 0 and first["late_telemetry"]["expected_rows"] == 40
    world.write_traffic(late.start, 1, seed=9)  # they arrive late
    world.advance(timedelta(minutes=15))  # the re-check is due one lateness (10 min) after the first check
    again = world.box.store.get(CHECK, event_id("check", MONITOR, late.key())).data
    assert again["rows"] == 40 and again["late_recheck"]["previous_rows"] == 0
    assert record(world, late).recheck == "done" and world.source.computed[late] == 2


def test_damaged_calibration_cache_files_are_rebuilt_not_dead_lettered(world, tmp_path, monkeypatch):
    """Was: a corrupted profiles/calibration/null-*.npz dead-lettered every check that needed it."""
    import bootstrap
    from core.settings import Settings

    world.write_traffic(T0.replace(minute=0), 2, seed=4)
    world.advance(timedelta(minutes=10))
    nulls = sorted((world.data_dir / "profiles" / "calibration").glob("null-*.npz"))
    assert nulls
    for path in nulls:
        path.write_bytes(path.read_bytes()[:50])  # a crash mid-write, a bad disk
    world.host.stop()
    restarted = make_world(tmp_path, monkeypatch, start=world.clock.now())  # a new process: no in-memory cache
    try:
        restarted.advance(timedelta(hours=1))
        nxt = Window(LATEST.end, LATEST.end + HOUR)
        assert windows.load(restarted.box.store, MONITOR, nxt).state == windows.DONE
        assert not restarted.dead_letters()
        for path in nulls:  # rebuilt in place
            with np.load(path) as saved:
                assert all(saved[k].size > 10 and np.isfinite(saved[k]).all() for k in saved.files)
    finally:
        restarted.host.stop()
        bootstrap.configure(Settings())
