"""DevHost: drives what a Functions app declares — timers, Service Bus triggers, HTTP routes — on one machine.

Two ways to run it. Real time: `serve_forever()` (one worker thread per trigger entity, a timer thread,
the HTTP server) until `stop()`/`request_stop()`. Driven time, for the demo and tests: with a
ManualClock, `advance_to(moment)` moves time from one timer occurrence or scheduled message to the next,
firing and draining at each, so a simulated day runs every occurrence in it, in order.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Mapping

import azure.functions as func
from azure.functions.timer import TimerRequest

from core.clock import Clock
from core.localbus import SqliteBus
from core.routing import SUBSCRIPTIONS, TOPIC
from core.types import iso, utc
from devhost.bindings import BusFunction, HttpFunction, TimerFunction, load_functions
from devhost.http import HttpGateway, HttpServer
from devhost.keys import FunctionKeys, default_keys_path, load_or_create
from devhost.messages import InFlight, process

log = logging.getLogger("devhost")


class DevHost:
    poll_interval_s = 0.2  # wall seconds an idle worker waits before asking its entity again
    timer_poll_s = 0.1

    def __init__(self, app: Any, *, bus: SqliteBus, clock: Clock, settings: Mapping[str, str] | None = None,
                 keys_path: Path | None = None, http_port: int | None = None, route_prefix: str = "api",
                 grace_s: float = 10.0) -> None:
        self.app, self.bus, self.clock, self.grace_s = app, bus, clock, grace_s
        self.functions = load_functions(app, {**os.environ, **(settings or {})})
        self.timers = [f for f in self.functions if isinstance(f, TimerFunction)]
        self.bus_functions = [f for f in self.functions if isinstance(f, BusFunction)]
        self.http_functions = [f for f in self.functions if isinstance(f, HttpFunction)]
        self._ensure_entities()
        start = clock.now()
        self._timer_lock = threading.Lock()
        self._last: dict[str, datetime | None] = {t.name: None for t in self.timers}
        self._next = {t.name: t.schedule.next_after(start) for t in self.timers}
        self._startup = {t.name for t in self.timers if t.run_on_startup}
        self.keys: FunctionKeys | None = None
        if any(f.auth_level != "anonymous" for f in self.http_functions):
            self.keys = load_or_create(keys_path or default_keys_path())
        self.gateway = HttpGateway(self.http_functions, self.keys, route_prefix=route_prefix)
        self._inflight: dict[str, InFlight] = {}
        self._inflight_lock = threading.Lock()
        self._stopping = threading.Event()
        self._stopped = False
        self._stop_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._server: HttpServer | None = None
        self._requested_port = http_port
        self.http_port: int | None = None
        if http_port is not None:
            self.start_http()

    # --- set-up -----------------------------------------------------------------------------
    def _ensure_entities(self) -> None:
        """A trigger's queue or subscription exists before anyone sends to it (filters from core.routing)."""
        existing = set(self.bus.entities())
        for fn in self.bus_functions:
            if fn.queue is not None:
                self.bus.ensure_queue(fn.queue)
                continue
            self.bus.ensure_topic(fn.topic or "")
            if fn.topic == TOPIC and fn.subscription in SUBSCRIPTIONS:
                self.bus.ensure_subscription(TOPIC, fn.subscription, SUBSCRIPTIONS[fn.subscription])
            elif fn.entity not in existing:
                self.bus.ensure_subscription(fn.topic or "", fn.subscription or "")

    def start_http(self, port: int | None = None) -> int:
        """Serve the HTTP routes on 127.0.0.1 (port 0: any free port); returns the port."""
        if self._server is None:
            self._server = HttpServer(self.gateway, port if port is not None else (self._requested_port or 0))
            self.http_port = self._server.port
            log.info("HTTP on http://127.0.0.1:%d/%s", self.http_port, "/".join(self.gateway.prefix))
        return self._server.port

    def call_http(self, method: str, path: str, *, headers: Mapping[str, str] | None = None, body: bytes = b"",
                  params: Mapping[str, str] | None = None) -> func.HttpResponse:
        """The same routing and key checks as the server, without a socket."""
        return self.gateway.handle(method, path, headers or {}, body, params)

    # --- timers -----------------------------------------------------------------------------
    def next_timer_time(self) -> datetime | None:
        with self._timer_lock:
            return min(self._next.values(), default=None)

    def fire_due_timers(self) -> int:
        """Call every timer whose next occurrence is due; missed occurrences collapse into one past-due call."""
        now, fired = self.clock.now(), 0
        for timer in self.timers:
            with self._timer_lock:
                startup = timer.name in self._startup
                self._startup.discard(timer.name)
                due = self._next[timer.name]
                if due > now and not startup:
                    continue
                past_due = due <= now and timer.schedule.next_after(due) <= now
                last = self._last[timer.name]
                if due <= now:
                    self._last[timer.name] = due
                    self._next[timer.name] = timer.schedule.next_after(now)
                upcoming = self._next[timer.name]
            self._run_timer(timer, past_due, last, upcoming)
            fired += 1
        return fired

    def _run_timer(self, timer: TimerFunction, past_due: bool, last: datetime | None, upcoming: datetime) -> None:
        status = {"Last": iso(last) if last else None, "Next": iso(upcoming), "LastUpdated": iso(self.clock.now())}
        request = TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": False})
        started, outcome = time.perf_counter(), "succeeded"
        try:
            timer(request)
        except Exception:  # a failed run is logged; the timer keeps its schedule, as in the Functions host
            log.exception("timer %s failed", timer.name)
            outcome = "failed"
        log.info("invoked %s trigger=timer at=%s past_due=%s outcome=%s duration_ms=%.1f", timer.name,
                 iso(self.clock.now()), past_due, outcome, (time.perf_counter() - started) * 1000)

    # --- Service Bus triggers ---------------------------------------------------------------
    def drain(self, *, max_messages: int = 10_000) -> int:
        """Process visible messages on every trigger entity, round robin, until none is visible now."""
        done = 0
        while done < max_messages:
            progressed = False
            for fn in self.bus_functions:
                if done >= max_messages or self._stopping.is_set():
                    return done
                if self._take_one(fn):
                    done, progressed = done + 1, True
            if not progressed:
                break
        return done

    def _take_one(self, fn: BusFunction) -> bool:
        received = self.bus.receive(fn.entity, max_messages=1)
        if not received:
            return False
        inflight = InFlight(self.bus, fn, received[0])
        with self._inflight_lock:
            self._inflight[received[0].lock_token] = inflight
        try:
            if self._stopping.is_set():
                inflight.settle("abandon")
            else:
                process(self.bus, self.clock, inflight)
        finally:
            with self._inflight_lock:
                self._inflight.pop(received[0].lock_token, None)
        return True

    def run_until_idle(self) -> int:
        """Fire due timers and drain, repeatedly, until nothing is due or visible; returns invocations."""
        total = 0
        while not self._stopping.is_set():
            count = self.fire_due_timers() + self.drain()
            if count == 0:
                break
            total += count
        return total

    def advance_to(self, moment: datetime, *, step: timedelta | None = None) -> int:
        """With a ManualClock: move time to `moment` through every timer occurrence and scheduled message."""
        set_clock = getattr(self.clock, "set", None)
        if set_clock is None:
            raise TypeError("advance_to needs a clock with set() (core.clock.ManualClock)")
        if step is not None and step <= timedelta(0):
            raise ValueError(f"step must be positive, got {step}")
        moment, total = utc(moment), self.run_until_idle()
        while not self._stopping.is_set():
            now = self.clock.now()
            candidates = [self.next_timer_time(), self.bus.next_visible_time(), now + step if step else None]
            upcoming = min((c for c in candidates if c is not None and c > now), default=None)
            if upcoming is None or upcoming > moment:
                if moment > now:
                    set_clock(moment)
                return total + self.run_until_idle()
            set_clock(upcoming)
            total += self.run_until_idle()
        return total

    # --- real time --------------------------------------------------------------------------
    def serve_forever(self) -> None:
        """Timers, one worker per trigger entity, and HTTP (if a port was given) until a stop is requested."""
        if self._requested_port is not None:
            self.start_http()
        self._spawn("devhost-timers", self._timer_loop)
        for entity in sorted({f.entity for f in self.bus_functions}):
            functions = [f for f in self.bus_functions if f.entity == entity]
            self._spawn(f"devhost-{entity}", self._worker_loop, functions)
        log.info("%d function(s) running: %s", len(self.functions),
                 ", ".join(f"{f.name}({f.trigger})" for f in self.functions))
        try:
            while not self._stopping.wait(0.5):
                pass
        finally:
            self.stop()

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _timer_loop(self) -> None:
        while not self._stopping.wait(self.timer_poll_s):
            self.fire_due_timers()

    def _worker_loop(self, functions: list[BusFunction]) -> None:
        turn = 0
        while not self._stopping.is_set():
            fn = functions[turn % len(functions)]
            turn += 1
            try:
                took = self._take_one(fn)
            except Exception:  # a bus hiccup must not kill the worker; it is logged and retried
                log.exception("worker for %s: receive failed; retrying", fn.entity)
                took = False
            if not took:
                self._stopping.wait(self.poll_interval_s)

    def request_stop(self) -> None:
        """Ask serve_forever to wind down (safe from a signal handler)."""
        self._stopping.set()

    def stop(self) -> None:
        """Stop taking messages; let in-flight handlers finish within the grace period, else abandon their
        messages (they come back, nothing is lost); stop HTTP. Idempotent."""
        self._stopping.set()
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            deadline = time.monotonic() + self.grace_s
            for thread in self._threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            with self._inflight_lock:
                stuck = list(self._inflight.values())
            for inflight in stuck:
                outcome = inflight.settle("abandon")
                log.warning("%s still running on message %s after %.1fs grace: %s", inflight.function.name,
                            inflight.received.message.message_id, self.grace_s, outcome)
            if self._server is not None:
                self._server.stop()
            log.info("stopped")
