import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.clock import ManualClock
from core.errors import PermanentError, RetryableError
from core.events import new_event
from core.state_sqlite import SqliteStateStore
from monitors.messages import message_for
from monitors.notify import (
    DIGEST,
    AppriseNotifier,
    LogNotifier,
    WebhookNotifier,
    channels_from,
    handle_event,
    send_digest,
)

INCIDENT = {"monitor": "flights-delay", "endpoint": "flights", "incident_id": "i-1", "status": "opened",
            "signal": "performance", "signals": ["data_drift", "performance"], "severity": "critical",
            "window_start": "2013-04-01T00:00:00Z", "window_end": "2013-04-02T00:00:00Z", "windows": 2,
            "breached": ["data_drift/temp", "performance/auc"],
            "highlights": ["performance (critical, 2 window(s)): auc 0.612 vs reference 0.7 (threshold 0.665)",
                           "data_drift (warning, 2 window(s)): temp: 0.31 (effect 0.31 >= floor 0.1, p 0.005)"],
            "report": "checks/flights-delay/20130401T000000Z-20130402T000000Z.json"}
SECRET = "T0KEN-s3cret"
START = datetime(2013, 4, 1, 12, tzinfo=UTC)


def event(kind, data, key="e-1"):
    return new_event(kind, data, id=key, time=START)


def opened(key="e-1"):
    return event("mlops.incident.changed.v1", INCIDENT, key)


def message(data=INCIDENT):
    return message_for(event("mlops.incident.changed.v1", data))


class Receiver:
    """A loopback webhook that answers with the given status codes in turn (then 200) and keeps bodies."""

    def __init__(self, statuses=()):
        self.statuses, self.bodies = list(statuses), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.bodies.append((status, json.loads(body)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook/{SECRET}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory():
    made = []

    def make(statuses=()):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_retries_with_backoff_until_the_receiver_recovers(receiver_factory):
    receiver = receiver_factory([503, 500])
    sleeps = []
    WebhookNotifier(receiver.url, retries=3, backoff=0.1, sleep=sleeps.append).notify(message())
    assert [s for s, _ in receiver.bodies] == [503, 500, 200]
    assert sleeps == [0.1, 0.2]
    sent = receiver.bodies[-1][1]
    assert sent["incident_id"] == "i-1" and sent["kind"] == "incident.opened"
    assert sent["summary"].startswith("[critical] incident opened on flights-delay (endpoint flights)")
    assert "auc 0.612 vs reference 0.7" in sent["text"]


def test_gives_up_as_retryable_and_4xx_is_permanent_and_neither_names_the_secret(receiver_factory, caplog):
    down = receiver_factory([500] * 10)
    with caplog.at_level(logging.DEBUG), pytest.raises(RetryableError, match="after 3 attempts: HTTP 500") as err:
        WebhookNotifier(down.url, retries=2, backoff=0, sleep=lambda s: None).notify(message())
    assert SECRET not in str(err.value) and "127.0.0.1" in str(err.value)
    refused = receiver_factory([404])
    with pytest.raises(PermanentError, match="HTTP 404") as err:
        WebhookNotifier(refused.url, sleep=lambda s: None).notify(message())
    assert len(refused.bodies) == 1 and SECRET not in str(err.value)  # no retry on a 4xx
    assert SECRET not in caplog.text and "attempt" in caplog.text


def test_connection_refused_is_retryable():
    receiver = Receiver()
    url = receiver.url
    receiver.close()  # nothing listens there any more
    with pytest.raises(RetryableError, match="connection failed") as err:
        WebhookNotifier(url, retries=1, backoff=0, sleep=lambda s: None).notify(message())
    assert SECRET not in str(err.value) and err.value.__cause__ is None


def test_teams_and_slack_formats(receiver_factory):
    receiver = receiver_factory()
    WebhookNotifier(receiver.url, "teams").notify(message())
    WebhookNotifier(receiver.url, "slack").notify(message())
    teams, slack = receiver.bodies[0][1], receiver.bodies[1][1]
    card = teams["attachments"][0]["content"]
    assert teams["type"] == "message" and card["type"] == "AdaptiveCard" and card["body"][0]["color"] == "attention"
    assert {"title": "signals", "value": "data_drift, performance"} in card["body"][2]["facts"]
    assert slack["text"].startswith("[critical] incident opened on flights-delay")
    assert "*incident_id*: i-1" in slack["blocks"][2]["text"]["text"]


def test_apprise_channels_deliver_through_apprise_and_fail_without_the_secret(receiver_factory, caplog):
    receiver = receiver_factory()
    channel = AppriseNotifier(f"json://user:{SECRET}@127.0.0.1:{receiver.port}/hook")
    channel.notify(message())
    (status, body), = receiver.bodies
    assert status == 200 and body["title"].startswith("[critical] incident opened") and "auc 0.612" in body["message"]
    assert SECRET not in channel.name and "****" in channel.name
    gone = Receiver()
    gone.close()
    dead = AppriseNotifier(f"json://user:{SECRET}@127.0.0.1:{gone.port}/hook")
    with caplog.at_level(logging.DEBUG), pytest.raises(RetryableError, match="did not accept") as err:
        dead.notify(message())
    assert SECRET not in str(err.value) and SECRET not in caplog.text
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentError, match="scheme 'slack'") as err:
        AppriseNotifier(f"slack://{SECRET}/B/C")  # apprise itself would log this invalid token verbatim
    assert SECRET not in str(err.value) and SECRET not in caplog.text


def test_settings_keep_channel_urls_secret(monkeypatch):
    from core.settings import Settings

    slack = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"
    monkeypatch.setenv("MLOPS_NOTIFY_URLS", f"json://u:{SECRET}@127.0.0.1:9/a, {slack}")
    monkeypatch.setenv("MLOPS_WEBHOOK_URL", f"https://hooks.example.org/{SECRET}")
    settings = Settings()
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump()) and "TIiajk" not in repr(settings)
    assert len(settings.notify_url_list()) == 2 and settings.webhook().endswith(SECRET)
    names = [c.name for c in channels_from(settings.notify_url_list(), settings.webhook(), "json")]
    assert len(names) == 3 and not any(SECRET in n or "TIiajk" in n for n in names)


def test_each_channel_gets_an_event_once_even_when_another_channel_is_down(tmp_path, receiver_factory):
    good, flaky = receiver_factory(), receiver_factory([500, 500])
    store = SqliteStateStore(tmp_path / "state.sqlite")
    channels = [WebhookNotifier(good.url), WebhookNotifier(flaky.url.replace("hook", "other"), retries=1, backoff=0,
                                                           sleep=lambda s: None)]
    with pytest.raises(RetryableError, match="1 channel"):
        handle_event(opened(), channels, store)
    assert len(good.bodies) == 1 and [s for s, _ in flaky.bodies] == [500, 500]
    assert len(handle_event(opened(), channels, store)) == 1  # the redelivery: only the channel that missed it
    assert handle_event(opened(), channels, store) == []
    assert len(good.bodies) == 1 and [s for s, _ in flaky.bodies] == [500, 500, 200]
    store.close()


def test_the_loop_tells_people_what_it_did_with_its_numbers():
    rejected = message_for(event("mlops.challenger.rejected.v1", {
        "run_id": "r-1", "endpoint": "flights", "candidate": {"name": "flights-delay", "version": "4"},
        "gate": {"accepted": False, "reasons": ["auc improves by +0.0019, less than the required +0.0050"],
                 "numbers": {"policy": {"primary_metric": "auc"}, "holdout_rows": 5188, "challenger": 0.6381,
                             "champion": 0.6362}}}))
    assert rejected["title"] == "challenger flights-delay:4 rejected for flights"
    assert "less than the required +0.0050" in rejected["text"] and "challenger 0.638, champion 0.636 on 5188" in \
        rejected["text"]
    rolled = message_for(event("mlops.model.rolled_back.v1", {
        "run_id": "r-2", "endpoint": "flights", "candidate": {"name": "flights-delay", "version": "5"},
        "traffic": {"blue": 100}, "reason": "error rate 0.250 over 0.02 (30 of 120 requests)",
        "health": {"requests": 120, "errors": 30, "error_rate": 0.25, "p95_latency_ms": 41.0,
                   "since": "2013-05-23T01:00:00Z", "until": "2013-05-23T09:00:00Z"}}))
    assert rolled["level"] == "failure" and "30 errors in 120 requests (error rate 0.250)" in rolled["text"]
    started = message_for(event("mlops.retrain.started.v1", {
        "run_id": "r-3", "endpoint": "flights", "reason": "drift: temp; performance at risk: realized auc ...",
        "window": {"start": "2013-03-01", "end": "2013-05-01"}, "champion": "flights-delay:1", "backend": "local"}))
    assert "performance at risk" in started["text"] and started["kind"] == "retrain.started"
    failed = message_for(event("mlops.retrain.completed.v1", {"run_id": "r-4", "endpoint": "flights",
                                                              "status": "failed", "failed_step": "train",
                                                              "error": "exit code 1"}))
    assert failed["kind"] == "retrain.failed" and "step train: exit code 1" in failed["text"]
    succeeded = {"run_id": "r-5", "endpoint": "flights", "status": "succeeded"}
    assert message_for(event("mlops.retrain.completed.v1", succeeded)) is None
    promoted = message_for(event("mlops.model.promoted.v1", {
        "run_id": "r-6", "endpoint": "flights", "candidate": {"name": "flights-delay", "version": "6"},
        "traffic": {"green": 100}, "reason": "healthy for 1 day, 0:00:00", "reference_uri": "/ref.parquet"}))
    assert promoted["title"] == "flights-delay:6 promoted on flights" and "green 100%" in promoted["text"]


def test_updates_wait_for_the_daily_digest_and_never_notify_alone(tmp_path, receiver_factory):
    receiver = receiver_factory()
    store = SqliteStateStore(tmp_path / "state.sqlite")
    channels = [WebhookNotifier(receiver.url)]
    clock = ManualClock(START)
    update = {**INCIDENT, "status": "updated", "digest": True}
    assert handle_event(event("mlops.incident.changed.v1", update, "u-1"), channels, store, clock=clock) == []
    quiet = {**update, "digest": False}
    handle_event(event("mlops.incident.changed.v1", quiet, "u-2"), channels, store, clock=clock)
    assert receiver.bodies == [] and len(store.list(DIGEST)) == 1
    assert send_digest(channels, store, clock=clock) == 0  # today's updates wait for tomorrow
    clock.advance(timedelta(days=1))
    assert send_digest(channels, store, clock=clock) == 1 and store.list(DIGEST) == []
    (_, body), = receiver.bodies
    assert body["kind"] == "incident.digest" and body["summary"] == "incident updates of 2013-04-01: 1"
    store.close()


def test_log_notifier_writes_one_line(caplog):
    with caplog.at_level(logging.INFO, logger="mlops.alerts"):
        LogNotifier(logging.getLogger("mlops.alerts")).notify(message())
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "incident opened on flights-delay" in record.getMessage()
