"""The devhost process under test, and the simulated clock it reads (a file this process writes).

Each host runs in its own session so SIGKILL takes it alone: what it started (a training driver) lives on,
as a pipeline in Azure ML outlives a recycled Functions instance. `cleanup` ends those at the very end.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

from chaos.world import World

ROOT = Path(__file__).parents[1]


class SimTime:
    """Simulated time: runs `speed` times the wall clock while `running`, can be paused and moved by hand."""

    def __init__(self, world: World, start: datetime, speed: float) -> None:
        self.world, self.speed = world, speed
        self._now, self._lock = start, threading.Lock()
        self._running = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="chaos-clock", daemon=True)
        world.set_time(start)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def run(self) -> None:
        self._running.set()
        if not self._thread.is_alive():
            self._thread.start()

    def pause(self) -> None:
        self._running.clear()

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            self.world.set_time(self._now)
            return self._now

    def close(self) -> None:
        self._stop.set()
        self._running.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _tick(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            self._running.wait()
            time.sleep(0.05)
            wall = time.monotonic()
            if self._running.is_set() and not self._stop.is_set():
                self.advance(timedelta(seconds=(wall - last) * self.speed))
            last = wall


class Host:
    """`python -m devhost` on the world's settings; started, killed with SIGKILL, restarted, stopped."""

    def __init__(self, world: World, port: int) -> None:
        self.world, self.port = world, port
        self.proc: subprocess.Popen | None = None
        self.started = 0
        self.pids: list[int] = []

    def start(self) -> None:
        env = {**os.environ, **self.world.env(self.port), "PYTHONUNBUFFERED": "1"}
        log = open(self.world.root / f"devhost-{self.started:03d}.log", "wb")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--port", str(self.port), "--host-json",
             str(self.world.root / "host.json"), "--grace", "5"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.pids.append(self.proc.pid)
        self.started += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no handler runs, no lock is released, nothing is flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM: devhost lets in-flight handlers finish (or abandons their messages) and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def ready(self, timeout_s: float = 60.0) -> bool:
        """The host answers HTTP (it has loaded the app and provisioned the bus)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/health", timeout=2) as res:
                    if res.status == 200:
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def cleanup(self) -> None:
        """End every process a host left behind (training drivers of killed hosts), session by session."""
        self.stop()
        for pid in self.pids:
            try:
                os.killpg(pid, signal.SIGKILL)  # each host led its own session: its group holds its children
            except (ProcessLookupError, PermissionError):
                continue
