"""The local SQLite bus behaves like Service Bus: peek-lock, expiry, dead-letter, duplicates, topics, schedules."""
from __future__ import annotations

import json
import tempfile
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from core.bus import BusMessage
from core.clock import ManualClock
from core.errors import ConfigurationError, NotFound
from core.events import new_event
from core.localbus import MAX_DELIVERY, LockLost, SqliteBus, SqliteBusPublisher, provision
from core.routing import SUBSCRIPTIONS, TOPIC
from core.servicebus import from_received

REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LOCK = timedelta(seconds=30)


def msg(message_id: str, subject: str = "s", **kw) -> BusMessage:
    return BusMessage(message_id=message_id, body=json.dumps({"id": message_id}).encode(), subject=subject, **kw)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def bus(tmp_path: Path, clock: ManualClock):
    bus = SqliteBus(tmp_path / "bus.db", clock=clock, lock_duration=LOCK, max_delivery_count=3)
    bus.ensure_queue("q")
    yield bus
    bus.close()


def test_send_receive_complete_keeps_every_property(bus: SqliteBus) -> None:
    sent = msg("m1", subject="mlops.x", correlation_id="c1", application_properties={"type": "mlops.x", "n": 1})
    assert bus.send("q", sent) is True
    [got] = bus.receive("q")
    assert got.message == sent
    assert got.delivery_count == 1 and got.entity == "q" and got.enqueued_time == START
    assert got.locked_until == START + LOCK
    assert bus.counts("q") == {"active": 0, "scheduled": 0, "locked": 1, "dead_lettered": 0}
    assert bus.receive("q") == []  # held by the first receiver
    bus.complete(got.lock_token)
    assert bus.counts("q") == {"active": 0, "scheduled": 0, "locked": 0, "dead_lettered": 0}
    assert bus.idle()


def test_receive_is_fifo_and_honours_max_messages(bus: SqliteBus) -> None:
    for i in range(5):
        bus.send("q", msg(f"m{i}"))
    first = bus.receive("q", max_messages=3)
    rest = bus.receive("q", max_messages=10)
    assert [r.message.message_id for r in first + rest] == [f"m{i}" for i in range(5)]
    assert len({r.lock_token for r in first + rest}) == 5


def test_duplicate_message_id_dropped_within_window_and_accepted_after(bus: SqliteBus, clock: ManualClock) -> None:
    assert bus.send("q", msg("dup")) is True
    [got] = bus.receive("q")
    bus.complete(got.lock_token)
    clock.advance(timedelta(minutes=9))
    assert bus.send("q", msg("dup")) is False  # even after completion, as on Service Bus
    assert bus.counts("q")["active"] == 0
    clock.advance(timedelta(minutes=1, seconds=1))
    assert bus.send("q", msg("dup")) is True
    assert [r.message.message_id for r in bus.receive("q")] == ["dup"]


def test_expired_lock_redelivers_with_higher_delivery_count(bus: SqliteBus, clock: ManualClock) -> None:
    bus.send("q", msg("m"))
    [first] = bus.receive("q")
    clock.advance(LOCK - timedelta(seconds=1))
    assert bus.receive("q") == []
    assert bus.next_visible_time() == START + LOCK
    clock.advance(timedelta(seconds=1))
    [second] = bus.receive("q")
    assert second.message.message_id == "m" and second.delivery_count == 2
    assert second.lock_token != first.lock_token
    with pytest.raises(LockLost):  # the first receiver lost it to the second
        bus.complete(first.lock_token)
    bus.complete(second.lock_token)
    assert bus.idle()


def test_complete_after_expiry_raises_lock_lost_even_if_nobody_took_it(bus: SqliteBus, clock: ManualClock) -> None:
    bus.send("q", msg("m"))
    [got] = bus.receive("q")
    clock.advance(LOCK)
    with pytest.raises(LockLost):
        bus.complete(got.lock_token)
    assert bus.counts("q")["active"] == 1  # not lost either
    with pytest.raises(LockLost):
        bus.complete("no-such-token")


def test_renew_lock_extends_the_hold(bus: SqliteBus, clock: ManualClock) -> None:
    bus.send("q", msg("m"))
    [got] = bus.receive("q")
    clock.advance(timedelta(seconds=20))
    assert bus.renew_lock(got.lock_token) == START + timedelta(seconds=20) + LOCK
    clock.advance(timedelta(seconds=20))  # past the original expiry
    assert bus.receive("q") == []
    bus.complete(got.lock_token)
    assert bus.idle()


def test_abandon_returns_the_message_now(bus: SqliteBus) -> None:
    bus.send("q", msg("m"))
    [got] = bus.receive("q")
    bus.abandon(got.lock_token)
    [again] = bus.receive("q")
    assert again.delivery_count == 2
    with pytest.raises(LockLost):
        bus.abandon(got.lock_token)


def test_dead_letter_keeps_reason_and_description(bus: SqliteBus, clock: ManualClock) -> None:
    bus.send("q", msg("bad"))
    [got] = bus.receive("q")
    clock.advance(timedelta(seconds=5))
    bus.dead_letter(got.lock_token, "MalformedEvent", "body is not JSON")
    [dead] = bus.dead_letters("q")
    assert (dead.message.message_id, dead.reason, dead.description) == ("bad", "MalformedEvent", "body is not JSON")
    assert dead.delivery_count == 1 and dead.dead_lettered_at == START + timedelta(seconds=5)
    assert bus.counts("q") == {"active": 0, "scheduled": 0, "locked": 0, "dead_lettered": 1}
    assert bus.receive("q") == []


def test_abandoning_past_max_delivery_count_dead_letters(bus: SqliteBus) -> None:
    bus.send("q", msg("poison"))
    for attempt in range(1, 4):
        [got] = bus.receive("q")
        assert got.delivery_count == attempt
        bus.abandon(got.lock_token)
    assert bus.receive("q") == []
    [dead] = bus.dead_letters("q")
    assert dead.reason == MAX_DELIVERY and dead.delivery_count == 3


def test_crashing_consumer_expiring_locks_ends_in_dead_letter(bus: SqliteBus, clock: ManualClock) -> None:
    bus.send("q", msg("crashes-handler"))
    bus.send("q", msg("fine"))
    for attempt in range(1, 4):  # the consumer takes it and dies each time, never settling
        [got] = bus.receive("q")
        assert (got.message.message_id, got.delivery_count) == ("crashes-handler", attempt)
        clock.advance(LOCK)
    [next_one] = bus.receive("q")
    assert next_one.message.message_id == "fine"
    [dead] = bus.dead_letters("q")
    assert dead.message.message_id == "crashes-handler" and dead.reason == MAX_DELIVERY and dead.delivery_count == 3


def test_topic_fans_out_by_subject_filter(bus: SqliteBus) -> None:
    bus.ensure_topic("t")
    bus.ensure_subscription("t", "checks", ("check",))
    bus.ensure_subscription("t", "drift", ("drift", "retrain"))
    bus.ensure_subscription("t", "audit")
    for message_id, subject in (("1", "check"), ("2", "drift"), ("3", "retrain"), ("4", "other")):
        assert bus.send("t", msg(message_id, subject))

    def ids(entity: str) -> list[str]:
        return [r.message.message_id for r in bus.receive(entity, max_messages=10)]

    assert ids("t/subscriptions/checks") == ["1"]
    assert ids("t/subscriptions/drift") == ["2", "3"]
    assert ids("t/subscriptions/audit") == ["1", "2", "3", "4"]
    assert bus.send("t", msg("1", "check")) is False  # duplicate detection is per topic
    assert bus.entities() == ["q", "t/subscriptions/audit", "t/subscriptions/checks", "t/subscriptions/drift"]


def test_scheduled_message_is_invisible_until_its_time(bus: SqliteBus, clock: ManualClock) -> None:
    at = START + timedelta(minutes=5)
    bus.send("q", msg("later", scheduled_enqueue_time=at))
    assert bus.receive("q") == []
    assert bus.counts("q") == {"active": 0, "scheduled": 1, "locked": 0, "dead_lettered": 0}
    assert bus.idle() and bus.next_visible_time() == at
    clock.set(at)
    [got] = bus.receive("q")
    assert got.message.message_id == "later" and got.enqueued_time == at


def test_unknown_entities_are_errors_naming_them(bus: SqliteBus) -> None:
    with pytest.raises(NotFound, match="nowhere"):
        bus.send("nowhere", msg("m"))
    bus.ensure_topic("t")
    with pytest.raises(NotFound, match="'t'"):
        bus.receive("t")
    with pytest.raises(NotFound, match="missing"):
        bus.ensure_subscription("missing", "s")


def test_state_survives_reopening_the_file(tmp_path: Path, clock: ManualClock) -> None:
    first = SqliteBus(tmp_path / "bus.db", clock=clock)
    first.ensure_queue("q")
    first.send("q", msg("kept"))
    first.close()
    second = SqliteBus(tmp_path / "bus.db", clock=clock)
    assert [r.message.message_id for r in second.receive("q")] == ["kept"]
    second.close()


def test_from_host_json_reads_the_repository_settings(tmp_path: Path) -> None:
    bus = SqliteBus.from_host_json(tmp_path / "bus.db", REPO / "host.json")
    assert bus.max_delivery_count == 5
    assert bus.lock_duration == timedelta(minutes=1)
    assert bus.duplicate_window == timedelta(minutes=10)
    bus.close()
    bad = tmp_path / "host.json"
    bad.write_text(json.dumps({"extensions": {"serviceBus": {"lockDuration": "a minute"}}}))
    with pytest.raises(ConfigurationError, match="lockDuration"):
        SqliteBus.from_host_json(tmp_path / "bus2.db", bad)


def test_publisher_routes_envelopes_through_provisioned_subscriptions(bus: SqliteBus) -> None:
    provision(bus)
    provision(bus)  # idempotent
    assert set(bus.entities()) == {"q"} | {f"{TOPIC}/subscriptions/{name}" for name in SUBSCRIPTIONS}
    event = new_event("mlops.retrain.requested.v1", {"endpoint": "e", "reason": "drift", "trigger": "http"},
                      id="ev-1", time=START, correlationid="inc-1")
    publisher = SqliteBusPublisher(bus)
    publisher.publish(event)
    publisher.publish(event)  # a retry after a lost ack: dropped as a duplicate
    [got] = bus.receive(f"{TOPIC}/subscriptions/retrain", max_messages=5)
    assert from_received(got) == event
    assert got.message.subject == "mlops.retrain.requested.v1"
    assert bus.counts(f"{TOPIC}/subscriptions/audit")["active"] == 1
    assert bus.counts(f"{TOPIC}/subscriptions/run-check")["active"] == 0


def test_threads_sharing_one_bus_and_threads_with_their_own_claim_each_message_once(tmp_path: Path) -> None:
    shared = SqliteBus(tmp_path / "bus.db")
    shared.ensure_queue("q")
    for i in range(200):
        shared.send("q", msg(f"m{i}"))
    own = [SqliteBus(tmp_path / "bus.db") for _ in range(2)]
    done: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def consume(bus: SqliteBus) -> None:
        try:
            while batch := bus.receive("q", max_messages=3):
                for r in batch:
                    bus.complete(r.lock_token)
                    done.append((r.message.message_id, r.delivery_count))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(bus,)) for bus in [shared] * 4 + own]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert sorted(done) == sorted((f"m{i}", 1) for i in range(200))
    for bus in [shared, *own]:
        bus.close()


class BusMachine(RuleBasedStateMachine):
    """Any interleaving of send/receive/complete/abandon/renew/time: nothing lost, nothing completed twice."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.clock = ManualClock(START)
        self.bus = SqliteBus(Path(self.dir.name) / "bus.db", clock=self.clock, lock_duration=LOCK,
                             max_delivery_count=3, duplicate_window=timedelta(minutes=2))
        self.bus.ensure_queue("q")
        self.accepted: Counter[str] = Counter()
        self.completed: list[tuple[str, int]] = []
        self.held: list[tuple[str, str, int, datetime]] = []  # token, id, seq, locked_until

    @rule(message_id=st.sampled_from("abcde"))
    def send(self, message_id: str) -> None:
        if self.bus.send("q", msg(message_id)):
            self.accepted[message_id] += 1

    @rule(n=st.integers(1, 3))
    def receive(self, n: int) -> None:
        for r in self.bus.receive("q", max_messages=n):
            self.held.append((r.lock_token, r.message.message_id, r.sequence_number, r.locked_until))

    @rule(data=st.data(), action=st.sampled_from(["complete", "abandon", "renew"]))
    def settle(self, data: st.DataObject, action: str) -> None:
        if not self.held:
            return
        token, message_id, seq, until = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        valid = self.clock.now() < until
        try:
            if action == "complete":
                self.bus.complete(token)
                self.completed.append((message_id, seq))
            elif action == "abandon":
                self.bus.abandon(token)
            else:
                self.held.append((token, message_id, seq, self.bus.renew_lock(token)))
        except LockLost:
            assert not valid, f"{action} of a live lock failed"
        else:
            assert valid, f"{action} succeeded on an expired lock"

    @rule(seconds=st.sampled_from([1, 10, 29, 30, 31, 90]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(timedelta(seconds=seconds))

    @invariant()
    def never_completed_twice(self) -> None:
        seqs = [seq for _, seq in self.completed]
        assert len(seqs) == len(set(seqs))

    def teardown(self) -> None:
        self.clock.advance(LOCK)
        while batch := self.bus.receive("q", max_messages=10):
            for r in batch:
                self.bus.complete(r.lock_token)
                self.completed.append((r.message.message_id, r.sequence_number))
        outcomes = Counter(m for m, _ in self.completed) + Counter(d.message.message_id
                                                                   for d in self.bus.dead_letters("q"))
        assert outcomes == self.accepted
        self.never_completed_twice()
        self.bus.close()
        self.dir.cleanup()


TestBusInterleavings = BusMachine.TestCase
TestBusInterleavings.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
