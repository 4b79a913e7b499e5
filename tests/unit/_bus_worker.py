"""A consumer process for the multi-process bus tests (run as a script, not collected by pytest).

usage: _bus_worker.py drain|hold DB QUEUE OUT LOCK_SECONDS [GO_FILE]
  drain: take messages until the queue is empty (nothing active, scheduled or locked); after each
         successful complete, append {"id", "pid", "delivery_count", "done_at"} to OUT.
  hold:  take one message, append {"id", "pid", "locked_until"} to OUT, then hang as a stuck handler would.
"""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from core.localbus import SqliteBus


def record(out: Path, **fields: object) -> None:
    with out.open("a") as f:
        f.write(json.dumps({"pid": os.getpid(), **fields}) + "\n")
        f.flush()


def drain(bus: SqliteBus, queue: str, out: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        batch = bus.receive(queue, max_messages=2)
        if not batch:
            if not any(bus.counts(queue)[k] for k in ("active", "scheduled", "locked")):
                return
            time.sleep(0.02)
            continue
        for received in batch:
            time.sleep(0.001)  # the handler's work, outside any transaction
            bus.complete(received.lock_token)
            record(out, id=received.message.message_id, delivery_count=received.delivery_count,
                   done_at=time.time())
    raise SystemExit(f"queue {queue} not drained before the deadline")


def hold(bus: SqliteBus, queue: str, out: Path) -> None:
    [received] = bus.receive(queue)
    record(out, id=received.message.message_id, locked_until=received.locked_until.timestamp())
    time.sleep(3600)


def main(mode: str, db: str, queue: str, out: str, lock_seconds: str, go_file: str = "") -> None:
    bus = SqliteBus(db, lock_duration=timedelta(seconds=float(lock_seconds)))
    if go_file:  # start together, so the consumers really contend
        Path(out + ".ready").touch()
        while not Path(go_file).exists():
            time.sleep(0.005)
    if mode == "drain":
        drain(bus, queue, Path(out), time.monotonic() + 30)
    else:
        hold(bus, queue, Path(out))
    bus.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
