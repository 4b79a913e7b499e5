"""The demo's audit feed: each event once, in order, without rereading the whole trail at every poll."""
from datetime import UTC, datetime, timedelta

from core.clock import ManualClock
from core.events import new_event
from core.records import record_event
from core.state_sqlite import SqliteStateStore
from replay.observers import AuditFeed

START = datetime(2013, 4, 1, tzinfo=UTC)


def event(store, at: datetime, n: int):
    data = {"run_id": f"rt-{n}", "endpoint": "flights", "candidate": {"name": "m", "version": n}, "traffic": {}}
    envelope = new_event("mlops.canary.started.v1", data, id=f"e{n}", subject="flights", time=at)
    record_event(store, envelope)
    return envelope


def test_each_event_reaches_the_feed_once_and_late_records_are_found_by_the_final_full_poll(tmp_path):
    store, clock = SqliteStateStore(tmp_path / "state.sqlite"), ManualClock(START)
    feed = AuditFeed(store, clock)
    event(store, START, 0)
    assert [e.id for e in feed.poll()] == ["e0"]
    clock.advance(timedelta(hours=6))
    event(store, clock.now(), 1)
    assert [e.id for e in feed.poll()] == ["e1"] and feed.poll() == []
    clock.advance(timedelta(days=3))  # a jump of days: every day since the last poll is read
    event(store, clock.now() - timedelta(days=2), 2)
    event(store, clock.now(), 3)
    assert [e.id for e in feed.poll()] == ["e2", "e3"]
    event(store, START + timedelta(hours=1), 4)  # recorded days after its event time
    assert feed.poll() == []
    assert [e.id for e in feed.poll(full=True)] == ["e4"]
    assert [e.id for e in feed.events] == ["e0", "e1", "e2", "e3", "e4"]
    assert [e.id for e in AuditFeed(store).poll()] == ["e0", "e4", "e1", "e2", "e3"]  # no clock: the whole trail
