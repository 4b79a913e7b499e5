"""Windows and watermarks: outages delay checks but never skip or repeat one (through the real consumer path)."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from core.events import event_id
from core.records import CHECK, advance_watermark, get_watermark
from core.state_sqlite import SqliteStateStore
from core.types import Window, parse_time
from monitors import windows
from monitors.schedule import MonitorSchedule, complete_window, due_windows, schedule_checks
from tests.service import make_world

UTC = timezone.utc
HOUR = timedelta(hours=1)
ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)
T0 = datetime(2024, 3, 1, 0, 1, tzinfo=UTC)
MONITOR = MonitorSchedule("flights-delay", "flights", HOUR, timedelta(minutes=10), ORIGIN)


@pytest.fixture
def store(tmp_path):
    return SqliteStateStore(tmp_path / "state.sqlite")


@pytest.fixture
def world(tmp_path, monkeypatch):
    import bootstrap
    from core.settings import Settings

    made = make_world(tmp_path, monkeypatch, start=T0)
    yield made
    made.host.stop()
    bootstrap.configure(Settings())


def test_due_windows_are_aligned_on_the_origin_and_wait_for_lateness():
    origin = datetime(2024, 1, 1, 0, 30, tzinfo=UTC)
    now = datetime(2024, 1, 1, 3, 35, tzinfo=UTC)
    windows = due_windows(None, now, size=HOUR, lateness=timedelta(minutes=10), origin=origin)
    assert [w.start.hour for w in windows] == [0, 1]  # [02:30, 03:30) is not due until 03:40
    assert all(w.start.minute == 30 for w in windows)
    later = due_windows(windows[-1].end, now + timedelta(minutes=5), size=HOUR, lateness=timedelta(minutes=10),
                        origin=origin)
    assert later == [Window(datetime(2024, 1, 1, 2, 30, tzinfo=UTC), datetime(2024, 1, 1, 3, 30, tzinfo=UTC))]
    off_grid = due_windows(datetime(2024, 1, 1, 1, 0, tzinfo=UTC), now, size=HOUR, lateness=timedelta(0),
                           origin=origin)
    assert off_grid[0].start == datetime(2024, 1, 1, 1, 30, tzinfo=UTC)  # never a partial window


def test_a_six_hour_outage_delays_checks_and_none_is_skipped_or_repeated(world):
    """The timer, the bus, the check consumer and the stores, under devhost: telemetry down for six hours."""
    world.write_traffic(T0 - 3 * HOUR, 18)
    outage = (T0 + 2 * HOUR, T0 + 8 * HOUR)
    watermarks_during_outage = set()
    while world.clock.now() < T0 + 14 * HOUR:
        world.source.down = outage[0] <= world.clock.now() < outage[1]
        world.advance(timedelta(minutes=5))
        if world.source.down:
            watermarks_during_outage.add(get_watermark(world.box.store, MONITOR.monitor))
    world.source.down = False
    world.advance(timedelta(minutes=30))

    first = Window(datetime(2024, 2, 29, 22, tzinfo=UTC), datetime(2024, 2, 29, 23, tzinfo=UTC))
    last_end = datetime(2024, 3, 1, 14, tzinfo=UTC)  # 13:00-14:00 was due at 14:10; 14:00-15:00 is not
    due = [Window(first.start + k * HOUR, first.end + k * HOUR) for k in range(int((last_end - first.start) / HOUR))]
    assert set(world.source.computed) == set(due), "a due window was never checked"
    assert set(world.source.computed.values()) == {1}, "a window was computed twice"
    for window in due:
        record = world.box.store.get(CHECK, event_id("check", MONITOR.monitor, window.key())).data
        assert record["status"] in ("ok", "breached") and record["rows"] == 40
    assert get_watermark(world.box.store, MONITOR.monitor) == due[-1].end
    assert len(watermarks_during_outage) == 1, "the watermark moved while checks were failing"
    dead = world.dead_letters()
    assert dead, "the bus gave up on some requests during the outage; the timer asked again under new ids"
    assert all("TelemetryUnavailable" in d.description for d in dead)  # the handler's error, not just a count
    assert world.box.bus.counts("mlops-events/subscriptions/run-check")["active"] == 0


def test_overlapping_timers_ask_once_and_every_window_is_checked_once(world):
    """Two timer instances at once publish the same ids; every copy goes through the real consumer."""
    world.write_traffic(T0 - 3 * HOUR, 10)
    world.clock.set(T0 + 6 * HOUR)
    complete_seed = Window(datetime(2024, 2, 29, 23, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
    from core.records import advance_watermark

    advance_watermark(world.box.store, MONITOR.monitor, complete_seed.end)
    ticks = []
    barrier = threading.Barrier(2)

    def timer():
        barrier.wait()
        ticks.append(world.box.schedule_checks())

    threads = [threading.Thread(target=timer) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    ids = [e.id for tick in ticks for e in tick]
    assert len(set(ids)) == 5  # 00:00 .. 05:00, each asked for once (a lost race re-reads and agrees)
    world.host.run_until_idle()
    assert sorted(w.start.hour for w in world.source.computed) == [0, 1, 2, 3, 4]
    assert set(world.source.computed.values()) == {1}
    assert get_watermark(world.box.store, MONITOR.monitor) == datetime(2024, 3, 1, 5, tzinfo=UTC)
    assert len(world.box.schedule_checks()) == 0  # all done: nothing asked again


def test_an_early_finisher_does_not_carry_the_watermark_over_a_missing_window(store):
    first, second, third = (Window(ORIGIN + k * HOUR, ORIGIN + (k + 1) * HOUR) for k in range(3))
    advance_watermark(store, "m", first.start)
    for window in (first, third, second):
        rec = windows.claim(store, ("m", window), f"msg-{window.key()}", T0, timedelta(minutes=10))
        windows.relay(store, None, windows.stage(store, rec, "c", []))
        mark = complete_window(store, "m", window, origin=ORIGIN, size=HOUR)
        if window is third:
            assert mark == first.end and windows.passed(store, "m", third)
    assert mark == third.end
    due = due_windows(third.end, third.end + 2 * HOUR, size=HOUR, lateness=timedelta(0), origin=ORIGIN)
    assert due[0].start == third.end


def test_a_new_monitor_starts_at_its_latest_due_window_not_at_its_origin(store):
    published = []

    class Collect:
        def publish(self, envelope, *, scheduled_at=None):
            published.append(envelope)

    schedule_checks([MONITOR], store, Collect(), T0)
    assert [(e.data["window_start"], e.data["window_end"]) for e in published] == [
        ("2024-02-29T22:00:00Z", "2024-02-29T23:00:00Z")]
    window = Window(parse_time("2024-02-29T22:00:00Z"), parse_time("2024-02-29T23:00:00Z"))
    assert published[0].id == event_id("check.requested", MONITOR.monitor, window.key())  # as monitors.check uses


def test_catch_up_is_bounded_per_tick_and_reported(store):
    published = []

    class Collect:
        def publish(self, envelope, *, scheduled_at=None):
            published.append(envelope)

    advance_watermark(store, MONITOR.monitor, T0 - 48 * HOUR)
    tick = schedule_checks([MONITOR], store, Collect(), T0, limit=10)
    assert len(tick) == 10 and tick.behind == {MONITOR.monitor: 36}  # 46 due windows: 10 now, the rest later
    assert [e.data["window_start"] for e in published][:2] == ["2024-02-28T01:00:00Z", "2024-02-28T02:00:00Z"]


def test_backfill_runs_every_whole_window_of_the_range_in_order(capsys):
    from monitors.backfill import backfill, main

    seen: list[Window] = []
    results = backfill("monitors/examples/flights-delay.yaml", parse_time("2013-03-01T06:00:00Z"),
                       parse_time("2013-03-05T00:00:00Z"), lambda w: seen.append(w) or {"window": w.to_json()})
    assert [w.start.day for w in seen] == [2, 3, 4]  # daily grid; the partial first day is left out
    assert results[0] == {"window": {"start": "2013-03-02T00:00:00Z", "end": "2013-03-03T00:00:00Z"}}
    assert main(["--spec", "monitors/examples/flights-delay.yaml", "--from", "yesterday", "--to", "x"]) == 2
    assert "--from 'yesterday'" in capsys.readouterr().err


def test_backfill_with_the_real_check_replays_the_alert_policy(tmp_path, monkeypatch, capsys):
    import json
    import shutil

    import numpy as np
    import pandas as pd

    from core.telemetry import LabelRecord, RequestRecord
    from core.telemetry_store import SqliteTelemetryStore
    from monitors.backfill import main

    rng = np.random.default_rng(0)
    numeric = ["sched_hour", "distance", "temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"]

    def frame(n: int, shift: float) -> pd.DataFrame:
        data = {c: rng.normal(10 + shift, 2, n) for c in numeric}
        data.update(carrier=rng.choice(["AA", "UA"], n), origin=rng.choice(["JFK", "LGA"], n),
                    dest=rng.choice(["BOS", "ATL"], n), score=rng.uniform(0, 1, n))
        data["label"] = (rng.uniform(0, 1, n) < data["score"]).astype(int)
        return pd.DataFrame(data)

    spec = tmp_path / "spec" / "flights-delay.yaml"
    (tmp_path / "spec" / "reference").mkdir(parents=True)
    shutil.copy("monitors/examples/flights-delay.yaml", spec)
    frame(1000, 0.0).to_parquet(tmp_path / "spec" / "reference" / "flights-delay.parquet")
    store = SqliteTelemetryStore(tmp_path / "data" / "telemetry.sqlite")
    day0 = datetime(2013, 3, 1, tzinfo=UTC)
    for day in range(4):  # the last two days drift
        rows = frame(300, 3.0 if day >= 2 else 0.0).to_dict("records")
        store.write([RequestRecord(time=day0 + timedelta(days=day, seconds=100 * i), request_id=f"{day}-{i}",
                                   endpoint="flights", deployment="blue", model_version="1",
                                   inputs={k: v for k, v in r.items() if k not in ("score", "label")},
                                   prediction=r["score"], score=r["score"], latency_ms=5.0, status_code=200)
                     for i, r in enumerate(rows)])
        store.write_labels([LabelRecord(f"{day}-{i}", r["label"], day0 + timedelta(days=day + 1))
                            for i, r in enumerate(rows)])
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    args = ["--spec", str(spec), "--from", "2013-03-01T00:00:00Z", "--to", "2013-03-05T00:00:00Z",
            "--data-dir", str(tmp_path / "backtest")]
    assert main(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in lines] == ["ok", "ok", "breached", "breached"]
    assert [bool(r["incidents"]) for r in lines] == [False, False, False, True]  # consecutive: 2
    assert main(args) == 0  # again: the windows are done, their records are reported, nothing re-runs
    assert [json.loads(line)["status"] for line in capsys.readouterr().out.splitlines()] == [r["status"]
                                                                                            for r in lines]
