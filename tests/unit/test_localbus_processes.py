"""Several consumer processes on one bus file: each message completed once; a killed consumer loses nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from core.bus import BusMessage
from core.localbus import SqliteBus

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_bus_worker.py")


def start(mode: str, db: Path, out: Path, lock_seconds: float, go: Path | None = None) -> subprocess.Popen:
    args = [sys.executable, str(WORKER), mode, str(db), "q", str(out), str(lock_seconds)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(args + ([str(go)] if go else []), cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)


def records(*outs: Path) -> list[dict]:
    return [json.loads(line) for out in outs if out.exists() for line in out.read_text().splitlines()]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def fill(db: Path, n: int) -> SqliteBus:
    bus = SqliteBus(db)
    bus.ensure_queue("q")
    for i in range(n):
        assert bus.send("q", BusMessage(message_id=f"m{i:03d}", body=b"{}"))
    return bus


def finish(proc: subprocess.Popen, timeout: float = 40) -> None:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err


def test_concurrent_consumer_processes_complete_each_message_exactly_once(tmp_path: Path) -> None:
    db, go = tmp_path / "bus.db", tmp_path / "go"
    bus = fill(db, 300)
    outs = [tmp_path / f"worker{i}.jsonl" for i in range(3)]
    procs = [start("drain", db, out, 60, go) for out in outs]
    wait_for(lambda: all(Path(f"{out}.ready").exists() for out in outs), 20, "workers to start")
    go.touch()
    for proc in procs:
        finish(proc)
    done = records(*outs)
    assert Counter(r["id"] for r in done) == Counter(f"m{i:03d}" for i in range(300))
    # Locks last 60 s and nobody died: a second delivery would mean two receivers held the message.
    assert {r["delivery_count"] for r in done} == {1}
    assert len({r["pid"] for r in done}) >= 2, "the consumers did not actually run concurrently"
    assert bus.counts("q") == {"active": 0, "scheduled": 0, "locked": 0, "dead_lettered": 0}
    bus.close()


def test_message_held_by_a_killed_consumer_comes_back_after_its_lock_expires(tmp_path: Path) -> None:
    db = tmp_path / "bus.db"
    bus = fill(db, 20)
    held_out = tmp_path / "holder.jsonl"
    holder = start("hold", db, held_out, 1.0)
    wait_for(lambda: records(held_out), 20, "the holder to take a message")
    [held] = records(held_out)
    assert bus.counts("q")["locked"] == 1
    os.kill(holder.pid, signal.SIGKILL)  # dies mid-handler, holding the lock, settling nothing
    holder.wait(timeout=10)
    assert holder.returncode == -signal.SIGKILL

    outs = [tmp_path / f"worker{i}.jsonl" for i in range(2)]
    procs = [start("drain", db, out, 1.0) for out in outs]
    for proc in procs:
        finish(proc)
    done = records(*outs)
    assert Counter(r["id"] for r in done) == Counter(f"m{i:03d}" for i in range(20))
    [redelivered] = [r for r in done if r["id"] == held["id"]]
    assert redelivered["delivery_count"] == 2 and redelivered["pid"] != held["pid"]
    assert redelivered["done_at"] >= held["locked_until"]
    assert {r["delivery_count"] for r in done if r["id"] != held["id"]} == {1}
    assert bus.idle()
    bus.close()
