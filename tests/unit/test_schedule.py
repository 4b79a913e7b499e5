"""Windows and watermarks: outages delay checks but never skip or repeat one."""
from __future__ import annotations

import contextlib
import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from core.clock import ManualClock
from core.errors import ConcurrencyConflict, RetryableError, TelemetryUnavailable
from core.events import Envelope, event_id
from core.records import CLAIM, claim_window, get_watermark, window_done
from core.state_sqlite import SqliteStateStore
from core.types import EndpointRef, Window, parse_time
from monitors.schedule import MonitorSchedule, complete_window, due_windows, schedule_checks

UTC = timezone.utc
HOUR = timedelta(hours=1)
ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)
T0 = datetime(2024, 3, 1, 0, 1, tzinfo=UTC)
MONITOR = MonitorSchedule("flights", "flights-delay", HOUR, timedelta(minutes=10), ORIGIN)


class FakeBus:
    """Service Bus semantics that matter here: duplicate detection for 10 minutes, FIFO, max 3 deliveries."""

    def __init__(self, clock: ManualClock, max_deliveries: int = 3) -> None:
        self.clock, self.max_deliveries = clock, max_deliveries
        self.queue: list[tuple[Envelope, int]] = []
        self.seen: dict[str, datetime] = {}
        self.dead: list[Envelope] = []
        self.errors: list[type] = []
        self._lock = threading.Lock()

    def publish(self, envelope: Envelope, *, scheduled_at: datetime | None = None) -> None:
        now = self.clock.now()
        with self._lock:
            if envelope.id in self.seen and now - self.seen[envelope.id] < timedelta(minutes=10):
                return
            self.seen[envelope.id] = now
            self.queue.append((envelope, 1))

    def drain(self, handler) -> None:
        while self.queue:
            envelope, delivery = self.queue.pop(0)
            try:
                handler(envelope)
            except RetryableError as exc:
                self.errors.append(type(exc))
                if delivery >= self.max_deliveries:
                    self.dead.append(envelope)
                else:
                    self.queue.append((envelope, delivery + 1))


class OutageSource:
    """A TelemetrySource (the Log Analytics one, offline) that is down while `down` is set."""

    def __init__(self) -> None:
        from monitors.telemetry.loganalytics import LogAnalyticsTelemetrySource
        from tests.contract.loganalytics_fake import FakeCredential, FakeLogAnalytics

        self.workspace = FakeLogAnalytics("ws-1")
        self.source = LogAnalyticsTelemetrySource("ws-1", credential=FakeCredential(), transport=self.workspace,
                                                  retry_total=0)

    @property
    def down(self) -> bool:
        return self.workspace.outage

    @down.setter
    def down(self, value: bool) -> None:
        self.workspace.outage = value  # every query answers 503

    def fetch(self, endpoint, window):
        return self.source.fetch(endpoint, window)


class FakeCheck:
    """What monitors.check.run_check does around the check itself: claim, fetch, complete or release."""

    def __init__(self, store, clock, owner: str = "instance-a", source=None) -> None:
        self.store, self.clock, self.owner = store, clock, owner
        self.source = source or OutageSource()
        self.ran: list[Window] = []
        self._lock = threading.Lock()

    @property
    def outage(self) -> bool:
        return self.source.down

    @outage.setter
    def outage(self, value: bool) -> None:
        self.source.down = value

    def __call__(self, envelope: Envelope) -> None:
        window = Window(parse_time(envelope.data["window_start"]), parse_time(envelope.data["window_end"]))
        monitor = envelope.data["monitor"]
        # One owner per invocation: claim_window lets an owner retake its own running claim (its redelivery
        # after a crash), so two concurrent deliveries in one instance must not share an owner.
        owner = f"{self.owner}/{uuid.uuid4()}"
        if not claim_window(self.store, monitor, window, owner, self.clock.now()):
            return
        try:
            self.source.fetch(EndpointRef(MONITOR.endpoint), window)  # TelemetryUnavailable during the outage
            with self._lock:
                self.ran.append(window)
            complete_window(self.store, monitor, window, event_id("check", monitor, window.key()),
                            origin=MONITOR.origin, size=MONITOR.window)
        except RetryableError:
            self._release(monitor, window, owner)
            raise

    def _release(self, monitor: str, window: Window, owner: str) -> None:
        doc = self.store.get(CLAIM, f"{monitor}/{window.key()}")
        if doc and doc.data["state"] == "running" and doc.data["owner"] == owner:
            with contextlib.suppress(ConcurrencyConflict):  # taken over meanwhile: the new owner finishes it
                self.store.delete(CLAIM, f"{monitor}/{window.key()}", doc.etag)


@pytest.fixture
def store(tmp_path):
    return SqliteStateStore(tmp_path / "state.sqlite")


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


def test_a_six_hour_outage_is_caught_up_in_order_with_no_gap_and_no_repeat(store):
    clock = ManualClock(T0)
    bus, check = FakeBus(clock), FakeCheck(store, clock)
    outage = (T0 + 2 * HOUR, T0 + 8 * HOUR)
    end = T0 + 14 * HOUR
    watermark_during_outage = set()
    while clock.now() <= end:
        check.outage = outage[0] <= clock.now() < outage[1]
        schedule_checks([MONITOR], store, bus, clock.now())
        bus.drain(check)
        if check.outage:
            watermark_during_outage.add(get_watermark(store, MONITOR.monitor))
        clock.advance(timedelta(minutes=5))

    starts = [w.start for w in check.ran]
    assert len(starts) == len(set(starts)), "a window was checked twice"
    assert all(b.start == a.end for a, b in zip(check.ran, check.ran[1:], strict=False)), "gap or disorder"
    assert check.ran[0] == Window(datetime(2024, 2, 29, 22, tzinfo=UTC), datetime(2024, 2, 29, 23, tzinfo=UTC))
    assert check.ran[-1].end == datetime(2024, 3, 1, 14, tzinfo=UTC) - HOUR  # 13:00-14:00 waits for lateness
    assert get_watermark(store, MONITOR.monitor) == check.ran[-1].end
    assert len(watermark_during_outage) == 1, "the watermark moved while checks were failing"
    assert bus.dead, "the bus gave up on some requests during the outage; the timer republished them"
    assert set(bus.errors) == {TelemetryUnavailable}  # the source's 503s, surfaced as retryable


def test_overlapping_timers_and_instances_never_check_a_window_twice(store):
    clock = ManualClock(T0 + 6 * HOUR)
    store_watermark = datetime(2024, 3, 1, 0, tzinfo=UTC)
    complete_window(store, MONITOR.monitor, Window(store_watermark - HOUR, store_watermark),
                    "seed", origin=ORIGIN, size=HOUR)
    published: list[Envelope] = []

    class Collect:
        def publish(self, envelope, *, scheduled_at=None):
            published.append(envelope)

    barrier = threading.Barrier(2)

    def timer():
        barrier.wait()
        schedule_checks([MONITOR], store, Collect(), clock.now())

    threads = [threading.Thread(target=timer) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len({e.id for e in published}) == 5 and len(published) == 10  # same ids from both timers

    checks = [FakeCheck(store, clock, owner=f"instance-{i}") for i in range(3)]
    deliveries = [(c, e) for e in published for c in checks]  # every instance gets every copy
    workers = [threading.Thread(target=lambda part=deliveries[i::4]: [c(e) for c, e in part]) for i in range(4)]
    [w.start() for w in workers]
    [w.join() for w in workers]
    ran = Counter(w.start for c in checks for w in c.ran)
    assert len(ran) == 5 and set(ran.values()) == {1}
    assert get_watermark(store, MONITOR.monitor) == datetime(2024, 3, 1, 5, tzinfo=UTC)
    assert schedule_checks([MONITOR], store, Collect(), clock.now()) == []  # all done: nothing asked again


def test_an_early_finisher_does_not_carry_the_watermark_over_a_missing_window(store):
    first, second, third = (Window(ORIGIN + k * HOUR, ORIGIN + (k + 1) * HOUR) for k in range(3))
    assert complete_window(store, "m", first, "c1", origin=ORIGIN, size=HOUR) == first.end
    assert complete_window(store, "m", third, "c3", origin=ORIGIN, size=HOUR) == first.end
    assert window_done(store, "m", third)
    assert complete_window(store, "m", second, "c2", origin=ORIGIN, size=HOUR) == third.end
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
    assert published[0].id == event_id("check.requested", "flights", window.key())  # as monitors.check uses


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
