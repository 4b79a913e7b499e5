"""devhost runs small FunctionApps defined here: timers on a ManualClock, Service Bus triggers on the
local bus with host-like settlement, HTTP through a real socket with function keys, and a clean
SIGTERM of `python -m devhost` with a handler in flight."""
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.functions as func
import pytest

from core.bus import BusMessage
from core.clock import ManualClock, SystemClock
from core.errors import ConfigurationError, ValidationFailed
from core.localbus import MAX_DELIVERY, SqliteBus, provision
from core.routing import TOPIC
from devhost.host import DevHost

ROOT = Path(__file__).parents[2]
START = datetime(2013, 4, 1, tzinfo=UTC)


@pytest.fixture
def clock():
    return ManualClock(START)


@pytest.fixture
def bus(tmp_path, clock):
    bus = SqliteBus(tmp_path / "bus.sqlite", clock=clock, max_delivery_count=3)
    provision(bus)
    yield bus
    bus.close()


def make_host(app, bus, clock, tmp_path, **kwargs):
    return DevHost(app, bus=bus, clock=clock, keys_path=tmp_path / "keys.json", **kwargs)


def check_requested(message_id="m-1", subject="mlops.check.requested.v1"):
    return BusMessage(message_id=message_id, body=b'{"hello": "bus"}', subject=subject,
                      correlation_id="corr-1", application_properties={"type": subject})


# --- timers ---------------------------------------------------------------------------------
def timer_app(calls, schedule="0 */5 * * * *", clock=None):
    app = func.FunctionApp()

    @app.timer_trigger(arg_name="tick", schedule=schedule)
    def every_five(tick: func.TimerRequest) -> None:
        calls.append((clock.now() if clock else None, tick.past_due))

    return app


def test_timer_fires_at_each_occurrence_of_a_simulated_hour(bus, clock, tmp_path):
    calls = []
    host = make_host(timer_app(calls, clock=clock), bus, clock, tmp_path)
    host.advance_to(START + timedelta(hours=1))
    assert [when for when, _ in calls] == [START + timedelta(minutes=5 * i) for i in range(1, 13)]
    assert not any(past_due for _, past_due in calls)
    assert clock.now() == START + timedelta(hours=1)


def test_missed_occurrences_collapse_into_one_past_due_call(bus, clock, tmp_path):
    calls = []
    host = make_host(timer_app(calls, clock=clock), bus, clock, tmp_path)
    clock.set(START + timedelta(minutes=32))  # a pause: six occurrences missed
    assert host.fire_due_timers() == 1
    assert calls == [(START + timedelta(minutes=32), True)]
    assert host.fire_due_timers() == 0
    clock.set(START + timedelta(minutes=35))
    host.fire_due_timers()
    assert calls[-1] == (START + timedelta(minutes=35), False)


def test_schedule_from_an_app_setting_and_a_missing_setting_fails_naming_it(bus, clock, tmp_path):
    calls = []
    host = make_host(timer_app(calls, "%MY_SCHEDULE%", clock), bus, clock, tmp_path,
                     settings={"MY_SCHEDULE": "0 0 * * * *"})
    host.advance_to(START + timedelta(hours=3))
    assert len(calls) == 3
    with pytest.raises(ConfigurationError, match="'MY_SCHEDULE'.*every_five"):
        make_host(timer_app([], "%MY_SCHEDULE%"), bus, clock, tmp_path)


def test_an_invalid_schedule_fails_at_start_naming_the_function(bus, clock, tmp_path):
    with pytest.raises(ConfigurationError, match="every_five.*expected 6 fields"):
        make_host(timer_app([], "*/5 * * * *"), bus, clock, tmp_path)


# --- Service Bus triggers ---------------------------------------------------------------------
def bus_app(handler, subscription="run-check"):
    app = func.FunctionApp()

    @app.service_bus_topic_trigger(arg_name="msg", topic_name=TOPIC, subscription_name=subscription,
                                   connection="ServiceBusConnection")
    def consumer(msg: func.ServiceBusMessage) -> None:
        handler(msg)

    return app


def test_topic_trigger_receives_the_full_message_and_completes_it(bus, clock, tmp_path):
    seen = []
    host = make_host(bus_app(seen.append), bus, clock, tmp_path)
    bus.send(TOPIC, check_requested("m-1"))
    bus.send(TOPIC, check_requested("m-2", subject="mlops.incident.changed.v1"))  # filtered out of run-check
    assert host.drain() == 1
    [msg] = seen
    assert (msg.message_id, msg.get_body(), msg.delivery_count) == ("m-1", b'{"hello": "bus"}', 1)
    assert (msg.subject, msg.label, msg.correlation_id) == ("mlops.check.requested.v1",) * 2 + ("corr-1",)
    assert msg.application_properties == {"type": "mlops.check.requested.v1"}
    assert msg.lock_token and msg.enqueued_time_utc == START
    assert bus.counts(f"{TOPIC}/subscriptions/run-check") == {"active": 0, "scheduled": 0, "locked": 0,
                                                              "dead_lettered": 0}


def test_a_failing_function_is_retried_then_dead_lettered_after_max_delivery_count(bus, clock, tmp_path):
    deliveries = []

    def fail(msg):
        deliveries.append(msg.delivery_count)
        raise RuntimeError("downstream is down")

    host = make_host(bus_app(fail), bus, clock, tmp_path)
    bus.send(TOPIC, check_requested())
    seen = []
    assert host.drain() == 1  # the failed message waits out its backoff before it is visible again
    seen.append(clock.now())
    for _ in range(2):
        later = bus.next_visible_time()
        host.advance_to(later)
        seen.append(later)
    assert deliveries == [1, 2, 3]
    assert [b - a for a, b in zip(seen, seen[1:], strict=False)] == [timedelta(seconds=5), timedelta(seconds=10)]
    [dead] = bus.dead_letters(f"{TOPIC}/subscriptions/run-check")
    assert (dead.reason, dead.message.message_id, dead.delivery_count) == (MAX_DELIVERY, "m-1", 3)
    assert "RuntimeError: downstream is down" in dead.description  # the handler's error, not only a count


def test_a_permanent_error_dead_letters_at_once_with_its_reason(bus, clock, tmp_path):
    calls = []

    def reject(msg):
        calls.append(msg.message_id)
        raise ValidationFailed("monitor 'x' is not configured", field="monitor")

    host = make_host(bus_app(reject), bus, clock, tmp_path)
    bus.send(TOPIC, check_requested())
    host.run_until_idle()
    assert calls == ["m-1"]
    [dead] = bus.dead_letters(f"{TOPIC}/subscriptions/run-check")
    assert (dead.reason, dead.description) == ("ValidationFailed", "monitor 'x' is not configured")


def test_a_function_may_dead_letter_its_message_itself_and_return(bus, clock, tmp_path):
    def settle_itself(msg):
        bus.dead_letter(msg.lock_token, "Poison", "handled by the function")

    host = make_host(bus_app(settle_itself), bus, clock, tmp_path)
    bus.send(TOPIC, check_requested())
    assert host.drain() == 1
    assert [d.reason for d in bus.dead_letters(f"{TOPIC}/subscriptions/run-check")] == ["Poison"]


def test_trigger_creates_its_queue_and_an_unknown_subscription(bus, clock, tmp_path):
    app = func.FunctionApp()
    seen = []

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="ServiceBusConnection")
    def worker(msg: func.ServiceBusMessage) -> None:
        seen.append(msg.message_id)

    @app.service_bus_topic_trigger(arg_name="msg", topic_name="other-topic", subscription_name="everything",
                                   connection="ServiceBusConnection")
    def listener(msg: func.ServiceBusMessage) -> None:
        seen.append(msg.message_id)

    host = make_host(app, bus, clock, tmp_path, settings={"WORK_QUEUE": "work"})
    bus.send("work", check_requested("q-1"))
    bus.send("other-topic", check_requested("t-1", subject="anything"))
    assert host.drain() == 2
    assert sorted(seen) == ["q-1", "t-1"]


def test_advance_to_delivers_scheduled_messages_at_their_time(bus, clock, tmp_path):
    app = func.FunctionApp()
    received = []

    @app.timer_trigger(arg_name="tick", schedule="0 0 * * * *")
    def hourly(tick: func.TimerRequest) -> None:
        later = clock.now() + timedelta(seconds=90)
        bus.send("later", BusMessage(message_id=f"at-{clock.now():%H}", body=b"{}", scheduled_enqueue_time=later))

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="later", connection="ServiceBusConnection")
    def deferred(msg: func.ServiceBusMessage) -> None:
        received.append((msg.message_id, clock.now()))

    host = make_host(app, bus, clock, tmp_path)
    host.advance_to(START + timedelta(hours=2))
    # The 02:00 message is due at 02:01:30, after the target time.
    assert received == [("at-01", START + timedelta(hours=1, seconds=90))]
    host.advance_to(START + timedelta(hours=2, minutes=2))
    assert received[1] == ("at-02", START + timedelta(hours=2, seconds=90))


def test_long_handler_keeps_its_lock_by_renewal(tmp_path):
    bus = SqliteBus(tmp_path / "bus.sqlite", clock=SystemClock(), lock_duration=timedelta(seconds=0.6))
    provision(bus)
    outcomes = []
    host = DevHost(bus_app(lambda msg: time.sleep(1.5)), bus=bus, clock=SystemClock(),
                   keys_path=tmp_path / "keys.json")
    bus.send(TOPIC, check_requested())
    assert host.drain() == 1
    outcomes.append(bus.counts(f"{TOPIC}/subscriptions/run-check"))
    # Without renewal the lock would have expired after 0.6 s and complete() would have failed.
    assert outcomes == [{"active": 0, "scheduled": 0, "locked": 0, "dead_lettered": 0}]
    bus.close()


# --- HTTP ---------------------------------------------------------------------------------------
def http_app():
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="checks/{id:int}", methods=["GET"])
    def get_check(req: func.HttpRequest) -> func.HttpResponse:
        body = {"id": req.route_params["id"], "verbose": req.params.get("verbose")}
        return func.HttpResponse(json.dumps(body), mimetype="application/json", headers={"X-Check": "yes"})

    @app.route(route="checks", methods=["POST"])
    def post_check(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(json.dumps({"got": req.get_json()}), status_code=202, mimetype="application/json")

    @app.route(route="health", auth_level=func.AuthLevel.ANONYMOUS)
    def health(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("ok")

    @app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("secret internal detail")

    @app.route(route="whoami", auth_level=func.AuthLevel.ANONYMOUS)
    def whoami(req: func.HttpRequest) -> func.HttpResponse:
        seen = {k: v for k, v in req.headers.items() if k.lower().startswith("x-ms-client-principal")}
        return func.HttpResponse(json.dumps(seen), mimetype="application/json")

    @app.route(route="admin/reset", auth_level=func.AuthLevel.ADMIN)
    def reset(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("reset")

    return app


def http(port, method, path, headers=None, body=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers or {},
                                     data=body)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def served(bus, clock, tmp_path):
    host = make_host(http_app(), bus, clock, tmp_path, http_port=0)
    yield host
    host.stop()


def test_http_function_keys_are_enforced_over_a_real_socket(served, tmp_path):
    port, key = served.http_port, served.keys.function_key
    status, _, body = http(port, "GET", "/api/checks/7")
    assert status == 401 and "x-functions-key" in json.loads(body)["error"]
    assert http(port, "GET", "/api/checks/7", {"x-functions-key": "wrong"})[0] == 401
    status, headers, body = http(port, "GET", "/api/checks/7?verbose=1", {"x-functions-key": key})
    assert status == 200 and json.loads(body) == {"id": "7", "verbose": "1"}
    assert headers["X-Check"] == "yes" and headers["Content-Type"].startswith("application/json")
    assert http(port, "GET", f"/api/checks/7?code={key}")[0] == 200
    status, _, body = http(port, "POST", f"/api/checks?code={key}", {"Content-Type": "application/json"},
                           b'{"monitor": "flights"}')
    assert status == 202 and json.loads(body) == {"got": {"monitor": "flights"}}
    assert http(port, "GET", "/api/health") == (200, http(port, "GET", "/api/health")[1], b"ok")
    # ADMIN needs the master key; the function key is not enough.
    assert http(port, "POST", f"/api/admin/reset?code={key}")[0] == 401
    assert http(port, "POST", f"/api/admin/reset?code={served.keys.master_key}")[0] == 200
    keys_file = tmp_path / "keys.json"
    assert json.loads(keys_file.read_text())["functionKeys"]["default"] == key
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600


def test_http_unknown_routes_wrong_methods_and_failures_are_json(served):
    port, key = served.http_port, {"x-functions-key": served.keys.function_key}
    status, _, body = http(port, "GET", "/api/nothing-here", key)
    assert status == 404 and "no route" in json.loads(body)["error"]
    assert http(port, "GET", "/api/checks/abc", key)[0] == 404  # {id:int} does not take "abc"
    assert http(port, "GET", "/checks/7", key)[0] == 404  # outside the /api prefix
    status, headers, body = http(port, "DELETE", "/api/checks/7", key)
    assert status == 405 and headers["Allow"] == "GET" and json.loads(body)["allowed"] == ["GET"]
    status, _, body = http(port, "GET", "/api/boom")
    assert status == 500 and json.loads(body)["error"] and b"secret internal detail" not in body
    assert b"Traceback" not in body


def test_call_http_routes_without_a_socket(bus, clock, tmp_path):
    host = make_host(http_app(), bus, clock, tmp_path)
    assert host.http_port is None
    assert host.call_http("GET", "/api/checks/42").status_code == 401
    response = host.call_http("GET", "/api/checks/42", params={"code": host.keys.function_key})
    assert json.loads(response.get_body())["id"] == "42"


def test_keys_survive_a_restart(bus, clock, tmp_path):
    first = make_host(http_app(), bus, clock, tmp_path).keys
    second = make_host(http_app(), bus, clock, tmp_path).keys
    assert first.created and not second.created and first.function_key == second.function_key


# --- the real app -------------------------------------------------------------------------------
def test_loads_the_real_function_app(bus, clock, tmp_path, app_functions):
    import function_app

    settings = {"CHECK_SCHEDULE": "0 */5 * * * *", "TRACK_SCHEDULE": "30 * * * * *"}
    host = make_host(function_app.app, bus, clock, tmp_path, settings=settings)
    kinds = {f.name: f.trigger for f in host.functions}
    assert kinds["schedule_checks"] == "timerTrigger" and kinds["run_check"] == "serviceBusTrigger"
    assert {f.entity for f in host.bus_functions} >= {f"{TOPIC}/subscriptions/run-check"}
    assert host.call_http("POST", "/api/checks", body=b"{}").status_code == 401
    assert host.call_http("GET", "/api/nothing").status_code == 404


# --- python -m devhost ------------------------------------------------------------------------
SLOW_APP = """
import time
from pathlib import Path
import azure.functions as func

app = func.FunctionApp()

@app.service_bus_queue_trigger(arg_name="msg", queue_name="work", connection="ServiceBusConnection")
def slow(msg: func.ServiceBusMessage) -> None:
    Path("started").write_text(msg.message_id)
    time.sleep(float(Path("sleep").read_text()))
    Path("finished").write_text(msg.message_id)
"""


def run_devhost_until_sigterm(tmp_path, sleep_s, grace_s):
    (tmp_path / "slowapp.py").write_text(textwrap.dedent(SLOW_APP))
    (tmp_path / "sleep").write_text(str(sleep_s))
    bus = SqliteBus.from_host_json(tmp_path / "data" / "bus.sqlite", ROOT / "host.json")
    bus.ensure_queue("work")
    bus.send("work", BusMessage(message_id="job-1", body=b"{}"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLOPS_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "devhost", "--app", "slowapp:app", "--no-http",
                             "--host-json", str(ROOT / "host.json"), "--grace", str(grace_s)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while not (tmp_path / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0].decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=15)
    return proc.returncode, output.decode(), bus


def test_sigterm_with_a_handler_in_flight_abandons_its_message(tmp_path):
    code, output, bus = run_devhost_until_sigterm(tmp_path, sleep_s=30, grace_s=0.5)
    assert code == 0, output
    assert not (tmp_path / "finished").exists()
    # Abandoned, not lost: visible again at once (not waiting 60 s for the lock to expire).
    assert bus.counts("work") == {"active": 1, "scheduled": 0, "locked": 0, "dead_lettered": 0}
    [again] = bus.receive("work")
    assert (again.message.message_id, again.delivery_count) == ("job-1", 2)
    assert "still running on message job-1" in output


def test_sigterm_lets_a_short_handler_finish_and_complete(tmp_path):
    code, output, bus = run_devhost_until_sigterm(tmp_path, sleep_s=0.5, grace_s=10)
    assert code == 0, output
    assert (tmp_path / "finished").read_text() == "job-1"
    assert bus.counts("work")["active"] == 0 and bus.counts("work")["locked"] == 0
    assert "outcome=completed" in output


# --- route templates and what devhost refuses to run ------------------------------------------
@pytest.mark.parametrize("template, path, expected", [
    ("checks/{id}", "checks/abc", {"id": "abc"}),
    ("Checks/{id}", "checks/abc", {"id": "abc"}),  # literals match case-insensitively
    ("checks/{id:int}", "checks/12", {"id": "12"}),
    ("checks/{id:int}", "checks/1x", None),
    ("checks/{id:int:min(10)}", "checks/9", None),
    ("runs/{id:guid}", "runs/6f9619ff-8b86-d011-b42d-00c04fc964ff", {"id": "6f9619ff-8b86-d011-b42d-00c04fc964ff"}),
    ("runs/{id:alpha}", "runs/abc1", None),
    ("items/{name?}", "items", {}),
    ("items/{name?}", "items/x", {"name": "x"}),
    ("files/{*path}", "files/a/b/c.txt", {"path": "a/b/c.txt"}),
    ("checks/{id}", "checks/1/extra", None),
    ("checks/{id}", "checks", None),
])
def test_route_templates(template, path, expected):
    from devhost.routes import Route

    assert Route.parse(template).match(path.split("/")) == expected


@pytest.mark.parametrize("template, words", [
    ("checks/{id:regexish}", "unsupported constraint"),
    ("checks/x{id}", "not a literal or a single"),
    ("{*rest}/tail", "catch-all parameter must be the last"),
    ("{a?}/b", "optional parameters must come last"),
])
def test_bad_route_templates_fail_at_start(template, words):
    from devhost.routes import Route

    with pytest.raises(ConfigurationError, match=words):
        Route.parse(template)


def test_literal_routes_win_over_parameters(bus, clock, tmp_path):
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="checks/{id}")
    def by_id(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("by_id")

    @app.route(route="checks/latest")
    def latest(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("latest")

    host = make_host(app, bus, clock, tmp_path)
    assert host.keys is None  # no route needs a key: no keys file is created
    assert host.call_http("GET", "/api/checks/latest").get_body() == b"latest"
    assert host.call_http("GET", "/api/checks/7").get_body() == b"by_id"


def test_batch_session_and_output_bindings_are_refused_with_the_function_name(bus, clock, tmp_path):
    batch = func.FunctionApp()

    @batch.service_bus_queue_trigger(arg_name="msgs", queue_name="q", connection="c",
                                     cardinality=func.Cardinality.MANY)
    def many(msgs) -> None:
        pass

    with pytest.raises(ConfigurationError, match="'many'.*batch"):
        make_host(batch, bus, clock, tmp_path)

    output = func.FunctionApp()

    @output.timer_trigger(arg_name="tick", schedule="0 * * * * *")
    @output.service_bus_queue_output(arg_name="out", queue_name="q", connection="c")
    def emits(tick, out: func.Out[str]) -> None:
        pass

    with pytest.raises(ConfigurationError, match="'emits'.*serviceBus.*'out'"):
        make_host(output, bus, clock, tmp_path)


def test_lock_renewal_keeps_up_with_a_fast_simulated_clock(tmp_path):
    from core.clock import ScaledClock

    fast = ScaledClock(START, speed=600)  # the 60 s lock lasts 0.1 s of wall time
    bus = SqliteBus(tmp_path / "bus.sqlite", clock=fast, lock_duration=timedelta(seconds=60))
    provision(bus)
    host = DevHost(bus_app(lambda msg: time.sleep(0.6)), bus=bus, clock=fast, keys_path=tmp_path / "keys.json")
    bus.send(TOPIC, check_requested())
    assert host.drain() == 1
    assert bus.counts(f"{TOPIC}/subscriptions/run-check") == {"active": 0, "scheduled": 0, "locked": 0,
                                                              "dead_lettered": 0}
    bus.close()


def test_async_functions_are_awaited(bus, clock, tmp_path):
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="ping")
    async def ping(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("pong")

    assert make_host(app, bus, clock, tmp_path).call_http("GET", "/api/ping").get_body() == b"pong"


def test_one_log_line_per_invocation_with_its_outcome(bus, clock, tmp_path, caplog):
    attempts = []

    def flaky(msg):
        attempts.append(msg.delivery_count)
        if len(attempts) == 1:
            raise RuntimeError("first try fails")

    host = make_host(bus_app(flaky), bus, clock, tmp_path)
    bus.send(TOPIC, check_requested())
    with caplog.at_level("INFO", logger="devhost"):
        host.drain()
        host.advance_to(clock.now() + timedelta(seconds=5))  # its backoff
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("invoked")]
    assert len(lines) == 2
    assert "consumer trigger=serviceBus" in lines[0] and "delivery=1 outcome=abandoned" in lines[0]
    assert "delivery=2 outcome=completed" in lines[1] and "duration_ms=" in lines[1]


def test_devhost_command_fails_at_start_naming_a_missing_setting(tmp_path):
    (tmp_path / "needs_setting.py").write_text(textwrap.dedent("""
        import azure.functions as func
        app = func.FunctionApp()

        @app.timer_trigger(arg_name="tick", schedule="%NOPE_SCHEDULE%")
        def tick(tick: func.TimerRequest) -> None:
            pass
    """))
    env = {k: v for k, v in os.environ.items() if k != "NOPE_SCHEDULE"}
    env.update(PYTHONPATH=str(ROOT), MLOPS_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-m", "devhost", "--app", "needs_setting:app", "--no-http",
                           "--host-json", str(ROOT / "host.json")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2
    assert "'NOPE_SCHEDULE' is not set (used by function 'tick')" in done.stderr


def test_devhost_drops_principal_headers_a_client_sends(served):
    """Only App Service authentication may name the caller; devhost has none, so a client cannot either."""
    status, _, body = http(served.http_port, "GET", "/api/whoami", {"X-MS-CLIENT-PRINCIPAL-NAME": "admin",
                                                                    "x-ms-client-principal": "e30="})
    assert status == 200 and json.loads(body) == {}


def test_many_concurrent_connections_are_all_answered(served):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=48) as pool:
        results = list(pool.map(lambda _: http(served.http_port, "GET", "/api/health")[0], range(200)))
    assert results == [200] * 200  # a listen backlog of 5 reset some of these


def test_an_idle_connection_is_closed_after_the_read_timeout(bus, clock, tmp_path, monkeypatch):
    import socket
    import time

    import devhost.http

    monkeypatch.setattr(devhost.http, "READ_TIMEOUT_S", 0.5)
    host = make_host(http_app(), bus, clock, tmp_path, http_port=0)
    try:
        idle = socket.create_connection(("127.0.0.1", host.http_port))
        idle.settimeout(5)
        started = time.monotonic()
        assert idle.recv(1) == b""  # the server hung up on a client that sent nothing
        assert time.monotonic() - started < 4
        idle.close()
        assert http(host.http_port, "GET", "/api/health")[0] == 200  # and still serves the others
    finally:
        host.stop()
