"""A durable local bus with Service Bus semantics, on one SQLite file shared by threads and processes.

Queues, topics with subject-filtered subscriptions, peek-lock with lock expiry, complete/abandon,
dead-letter with a reason (and after max delivery count), duplicate detection by message id, and
scheduled messages. Every state change is one short `BEGIN IMMEDIATE` transaction, so a message is
claimed by exactly one receiver even across processes; a receiver that dies simply lets its lock
expire. All times come from the injected Clock, so simulated time drives expiry and schedules.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.bus import BusMessage, ReceivedMessage
from core.clock import Clock, SystemClock
from core.errors import ConfigurationError, NotFound, RetryableError
from core.events import Envelope
from core.routing import SUBSCRIPTIONS, TOPIC
from core.types import utc

MAX_DELIVERY = "MaxDeliveryCountExceeded"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    name TEXT PRIMARY KEY, kind TEXT NOT NULL, topic TEXT, subjects TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, entity TEXT NOT NULL, message_id TEXT NOT NULL,
    body BLOB NOT NULL, subject TEXT NOT NULL, content_type TEXT NOT NULL, correlation_id TEXT,
    properties TEXT NOT NULL, scheduled_at INTEGER, enqueued_at INTEGER NOT NULL,
    available_at INTEGER NOT NULL, lock_token TEXT, locked_until INTEGER,
    delivery_count INTEGER NOT NULL DEFAULT 0, dead INTEGER NOT NULL DEFAULT 0,
    dl_reason TEXT, dl_description TEXT, dl_at INTEGER, last_error TEXT);
CREATE INDEX IF NOT EXISTS messages_fifo ON messages (entity, dead, seq);
CREATE INDEX IF NOT EXISTS messages_due ON messages (dead, available_at);
CREATE UNIQUE INDEX IF NOT EXISTS messages_lock ON messages (lock_token) WHERE lock_token IS NOT NULL;
CREATE TABLE IF NOT EXISTS duplicates (
    entity TEXT NOT NULL, message_id TEXT NOT NULL, sent_at INTEGER NOT NULL,
    PRIMARY KEY (entity, message_id));
CREATE INDEX IF NOT EXISTS duplicates_age ON duplicates (entity, sent_at);
"""


class LockLost(RetryableError):
    """The lock token is unknown or its lock expired; another receiver may now hold the message."""


@dataclass(frozen=True)
class DeadLetter:
    message: BusMessage
    reason: str
    description: str
    delivery_count: int
    dead_lettered_at: datetime


class SqliteBus:
    def __init__(self, path: str | Path, *, clock: Clock | None = None,
                 lock_duration: timedelta = timedelta(seconds=60), max_delivery_count: int = 10,
                 duplicate_window: timedelta = timedelta(minutes=10)) -> None:
        if lock_duration <= timedelta(0) or max_delivery_count < 1 or duplicate_window < timedelta(0):
            raise ConfigurationError("lock_duration > 0, max_delivery_count >= 1, duplicate_window >= 0 required")
        self.path = Path(path)
        self.clock = clock or SystemClock()
        self.lock_duration = lock_duration
        self.max_delivery_count = max_delivery_count
        self.duplicate_window = duplicate_window
        # One connection, guarded by a lock: sqlite3 connections are not safe to share between threads.
        self._mutex = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._closed = False
        with self._tx() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
            if "last_error" not in columns:  # a bus file from before abandon() kept the handler's error
                db.execute("ALTER TABLE messages ADD COLUMN last_error TEXT")

    @classmethod
    def from_host_json(cls, path: str | Path, host_json: Path = Path("host.json"), *,
                       clock: Clock | None = None) -> "SqliteBus":
        """Same settings as the Functions host: maxDeliveryCount, lockDuration, duplicate window."""
        from core.servicebus import host_settings

        return cls(path, clock=clock, **host_settings(host_json))

    # --- topology -------------------------------------------------------------------------------
    def ensure_queue(self, name: str) -> None:
        with self._tx() as db:
            self._ensure(db, _plain_name(name, "queue"), "queue", None, ())

    def ensure_topic(self, name: str) -> None:
        with self._tx() as db:
            self._ensure(db, _plain_name(name, "topic"), "topic", None, ())

    def ensure_subscription(self, topic: str, name: str, subjects: tuple[str, ...] = ()) -> None:
        """Empty `subjects` receives every message of the topic; otherwise only those subjects."""
        path = f"{topic}/subscriptions/{_plain_name(name, 'subscription')}"
        with self._tx() as db:
            if self._kind(db, topic) != "topic":
                raise NotFound(f"topic {topic!r} does not exist")
            self._ensure(db, path, "subscription", topic, tuple(subjects))

    def _ensure(self, db: sqlite3.Connection, name: str, kind: str, topic: str | None,
                subjects: tuple[str, ...]) -> None:
        existing = self._kind(db, name)
        if existing and existing != kind:
            raise ValueError(f"{name!r} already exists as a {existing}")
        # Re-provisioning with a new filter replaces it, as an ARM deployment would.
        db.execute("INSERT INTO entities (name, kind, topic, subjects) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET subjects = excluded.subjects",
                   (name, kind, topic, json.dumps(sorted(subjects))))

    def entities(self) -> list[str]:
        with self._tx(write=False) as db:
            rows = db.execute("SELECT name FROM entities WHERE kind != 'topic' ORDER BY name").fetchall()
        return [name for (name,) in rows]

    # --- sending --------------------------------------------------------------------------------
    def send(self, entity: str, message: BusMessage) -> bool:
        """Enqueue on a queue or fan out over a topic; False if dropped as a duplicate message id."""
        if not message.message_id:
            raise ValueError("message_id is required (duplicate detection keys on it)")
        now = self._now()
        with self._tx() as db:
            kind = self._kind(db, entity)
            if kind not in ("queue", "topic"):
                raise NotFound(f"no queue or topic named {entity!r}")
            if self._is_duplicate(db, entity, message.message_id, now):
                return False
            for target in self._targets(db, entity, kind, message.subject):
                self._insert(db, target, message, now)
        return True

    def _is_duplicate(self, db: sqlite3.Connection, entity: str, message_id: str, now: int) -> bool:
        horizon = now - self.duplicate_window // _US
        db.execute("DELETE FROM duplicates WHERE entity = ? AND sent_at <= ?", (entity, horizon))
        seen = db.execute("SELECT 1 FROM duplicates WHERE entity = ? AND message_id = ?",
                          (entity, message_id)).fetchone()
        if seen:
            return True
        db.execute("INSERT INTO duplicates (entity, message_id, sent_at) VALUES (?, ?, ?)", (entity, message_id, now))
        return False

    @staticmethod
    def _targets(db: sqlite3.Connection, entity: str, kind: str, subject: str) -> list[str]:
        if kind == "queue":
            return [entity]
        rows = db.execute("SELECT name, subjects FROM entities WHERE kind = 'subscription' AND topic = ? "
                          "ORDER BY name", (entity,)).fetchall()
        # As on Service Bus, a topic message that matches no subscription is accepted and discarded.
        return [name for name, subjects in rows if not json.loads(subjects) or subject in json.loads(subjects)]

    @staticmethod
    def _insert(db: sqlite3.Connection, entity: str, m: BusMessage, now: int) -> None:
        scheduled = _to_us(m.scheduled_enqueue_time) if m.scheduled_enqueue_time else None
        available = max(now, scheduled or now)
        db.execute(
            "INSERT INTO messages (entity, message_id, body, subject, content_type, correlation_id, properties,"
            " scheduled_at, enqueued_at, available_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entity, m.message_id, bytes(m.body), m.subject, m.content_type, m.correlation_id,
             json.dumps(dict(m.application_properties), sort_keys=True), scheduled, available, available))

    # --- receiving and settling -----------------------------------------------------------------
    def receive(self, entity: str, *, max_messages: int = 1) -> list[ReceivedMessage]:
        """Peek-lock up to `max_messages` visible messages, oldest first; each is held by this caller only."""
        now = self._now()
        locked_until = now + self.lock_duration // _US
        taken: list[ReceivedMessage] = []
        with self._tx() as db:
            if self._kind(db, entity) not in ("queue", "subscription"):
                raise NotFound(f"no queue or subscription named {entity!r} (topics: 'topic/subscriptions/name')")
            while len(taken) < max_messages:
                # FIFO by sequence number; without INDEXED BY the planner may sort every visible row.
                row = db.execute(f"SELECT {_COLUMNS} FROM messages INDEXED BY messages_fifo WHERE entity = ? "
                                 "AND dead = 0 AND available_at <= ? ORDER BY seq LIMIT 1", (entity, now)).fetchone()
                if row is None:
                    break
                seq, delivery_count = row[0], row[-1]
                if delivery_count >= self.max_delivery_count:
                    # The previous holders kept losing their locks (crashing): stop handing it out.
                    last = db.execute("SELECT last_error FROM messages WHERE seq = ?", (seq,)).fetchone()[0]
                    self._bury(db, seq, MAX_DELIVERY, f"delivered {delivery_count} times without being settled"
                               + (f"; last error: {last}" if last else " (the receiver's lock expired)"), now)
                    continue
                token = str(uuid.uuid4())
                db.execute("UPDATE messages SET lock_token = ?, locked_until = ?, available_at = ?, "
                           "delivery_count = delivery_count + 1 WHERE seq = ?",
                           (token, locked_until, locked_until, seq))
                taken.append(_received(row, entity, token, locked_until))
        return taken

    def complete(self, lock_token: str) -> None:
        with self._tx() as db:
            seq, _ = self._held(db, lock_token)
            db.execute("DELETE FROM messages WHERE seq = ?", (seq,))

    def abandon(self, lock_token: str, *, delay: timedelta = timedelta(0), error: str = "") -> None:
        """Release for redelivery after `delay` (a backoff; Service Bus itself redelivers at once), keeping
        the handler's `error`; dead-letter with that error if the message has used up its deliveries."""
        now = self._now()
        with self._tx() as db:
            seq, delivery_count = self._held(db, lock_token)
            error = error[:2000] or (db.execute("SELECT last_error FROM messages WHERE seq = ?", (seq,))
                                     .fetchone()[0] or "")
            if delivery_count >= self.max_delivery_count:
                self._bury(db, seq, MAX_DELIVERY, f"abandoned after {delivery_count} deliveries"
                           + (f"; last error: {error}" if error else ""), now)
            else:
                db.execute("UPDATE messages SET lock_token = NULL, locked_until = NULL, available_at = ?, "
                           "last_error = ? WHERE seq = ?", (now + max(delay, timedelta(0)) // _US, error or None, seq))

    def dead_letter(self, lock_token: str, reason: str, description: str = "") -> None:
        now = self._now()
        with self._tx() as db:
            seq, _ = self._held(db, lock_token)
            self._bury(db, seq, reason, description, now)

    def renew_lock(self, lock_token: str) -> datetime:
        until = self._now() + self.lock_duration // _US
        with self._tx() as db:
            seq, _ = self._held(db, lock_token)
            db.execute("UPDATE messages SET locked_until = ?, available_at = ? WHERE seq = ?", (until, until, seq))
        return _from_us(until)

    def _held(self, db: sqlite3.Connection, lock_token: str) -> tuple[int, int]:
        row = db.execute("SELECT seq, delivery_count FROM messages WHERE lock_token = ? AND dead = 0 "
                         "AND locked_until > ?", (lock_token, self._now())).fetchone()
        if row is None:
            raise LockLost(f"lock {lock_token} is unknown or expired; the message may be with another receiver")
        return row[0], row[1]

    @staticmethod
    def _bury(db: sqlite3.Connection, seq: int, reason: str, description: str, now: int) -> None:
        db.execute("UPDATE messages SET dead = 1, lock_token = NULL, locked_until = NULL, dl_reason = ?, "
                   "dl_description = ?, dl_at = ? WHERE seq = ?", (reason, description, now, seq))

    # --- inspection -----------------------------------------------------------------------------
    def dead_letters(self, entity: str) -> list[DeadLetter]:
        with self._tx(write=False) as db:
            if self._kind(db, entity) not in ("queue", "subscription"):
                raise NotFound(f"no queue or subscription named {entity!r}")
            rows = db.execute(f"SELECT {_COLUMNS}, dl_reason, dl_description, dl_at FROM messages "
                              "WHERE entity = ? AND dead = 1 ORDER BY seq", (entity,)).fetchall()
        return [DeadLetter(message=_message(row), reason=row[-3], description=row[-2] or "",
                           delivery_count=row[-4], dead_lettered_at=_from_us(row[-1])) for row in rows]

    def counts(self, entity: str) -> dict[str, int]:
        """active: visible now; scheduled: waiting for their time; locked: held by a receiver."""
        now = self._now()
        with self._tx(write=False) as db:
            if self._kind(db, entity) is None:
                raise NotFound(f"no entity named {entity!r}")
            row = db.execute(
                "SELECT COALESCE(SUM(dead = 0 AND available_at <= ?), 0),"
                " COALESCE(SUM(dead = 0 AND available_at > ? AND (locked_until IS NULL OR locked_until <= ?)), 0),"
                " COALESCE(SUM(dead = 0 AND locked_until > ?), 0), COALESCE(SUM(dead = 1), 0)"
                " FROM messages WHERE entity = ?", (now, now, now, now, entity)).fetchone()
        return dict(zip(("active", "scheduled", "locked", "dead_lettered"), row, strict=True))

    def idle(self) -> bool:
        """Nothing visible now and nothing locked, in any entity (scheduled messages may remain)."""
        now = self._now()
        with self._tx(write=False) as db:
            busy = db.execute("SELECT 1 FROM messages WHERE dead = 0 AND (available_at <= ? OR locked_until > ?) "
                              "LIMIT 1", (now, now)).fetchone()
        return busy is None

    def next_visible_time(self) -> datetime | None:
        """When the next scheduled message or expiring lock makes something visible (None: nothing pending)."""
        with self._tx(write=False) as db:
            (first,) = db.execute("SELECT MIN(available_at) FROM messages WHERE dead = 0 AND available_at > ?",
                                  (self._now(),)).fetchone()
        return _from_us(first) if first is not None else None

    # --- plumbing -------------------------------------------------------------------------------
    def close(self) -> None:
        with self._mutex:
            self._closed = True
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> "SqliteBus":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> int:
        return _to_us(self.clock.now())

    @staticmethod
    def _kind(db: sqlite3.Connection, name: str) -> str | None:
        row = db.execute("SELECT kind FROM entities WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One short transaction; IMMEDIATE takes the write lock up front so claims never race."""
        with self._mutex:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"bus {self.path} is closed")
        # A connection inherited through fork() belongs to the parent: open a fresh one.
        if self._conn is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL survives a killed process; only an OS crash can lose the last commits.
            conn.execute("PRAGMA synchronous = NORMAL")
            self._conn, self._pid = conn, os.getpid()
        return self._conn


class SqliteBusPublisher:
    """core.ports.Publisher over the local bus: one topic, message id = envelope id."""

    def __init__(self, bus: SqliteBus, topic: str = TOPIC) -> None:
        self.bus = bus
        self.topic = topic

    def publish(self, envelope: Envelope, *, scheduled_at: datetime | None = None) -> None:
        from core.servicebus import to_bus_message

        self.bus.send(self.topic, to_bus_message(envelope, scheduled_at))


def provision(bus: SqliteBus) -> None:
    """The topology of core.routing: one topic and a filtered subscription per consumer."""
    bus.ensure_topic(TOPIC)
    for name, subjects in SUBSCRIPTIONS.items():
        bus.ensure_subscription(TOPIC, name, subjects)


def _plain_name(name: str, kind: str) -> str:
    if not name or "/" in name:
        raise ValueError(f"invalid {kind} name {name!r}: non-empty, without '/'")
    return name


_COLUMNS = ("seq, message_id, body, subject, content_type, correlation_id, properties, scheduled_at, "
            "enqueued_at, delivery_count")


def _message(row: tuple) -> BusMessage:
    return BusMessage(message_id=row[1], body=bytes(row[2]), subject=row[3], content_type=row[4],
                      correlation_id=row[5], application_properties=json.loads(row[6]),
                      scheduled_enqueue_time=_from_us(row[7]) if row[7] is not None else None)


def _received(row: tuple, entity: str, token: str, locked_until: int) -> ReceivedMessage:
    return ReceivedMessage(message=_message(row), lock_token=token, delivery_count=row[9] + 1,
                           enqueued_time=_from_us(row[8]), locked_until=_from_us(locked_until),
                           sequence_number=row[0], entity=entity)


def _to_us(moment: datetime) -> int:
    return (utc(moment) - _EPOCH) // _US


def _from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)

