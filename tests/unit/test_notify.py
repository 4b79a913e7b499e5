import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.errors import PermanentError, RetryableError
from core.events import event_id, new_event
from core.state_sqlite import SqliteStateStore
from monitors.notify import LogNotifier, WebhookNotifier, handle_incident_changed

INCIDENT = {"monitor": "flights-delay", "incident_id": "i-1", "status": "opened", "signal": "data_drift",
            "severity": "warning", "window_start": "2013-04-01T00:00:00Z", "window_end": "2013-04-02T00:00:00Z",
            "breached": ["distance", "dataset"]}


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
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
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
    WebhookNotifier(receiver.url, retries=3, backoff=0.1, sleep=sleeps.append).notify(INCIDENT)
    assert [s for s, _ in receiver.bodies] == [503, 500, 200]
    assert sleeps == [0.1, 0.2]
    assert receiver.bodies[-1][1]["incident_id"] == "i-1" and "opened" in receiver.bodies[-1][1]["summary"]


def test_gives_up_as_retryable_and_4xx_is_permanent(receiver_factory):
    down = receiver_factory([500] * 10)
    with pytest.raises(RetryableError, match="after 3 attempts: HTTP 500"):
        WebhookNotifier(down.url, retries=2, backoff=0, sleep=lambda s: None).notify(INCIDENT)
    refused = receiver_factory([404])
    with pytest.raises(PermanentError, match="HTTP 404"):
        WebhookNotifier(refused.url, sleep=lambda s: None).notify(INCIDENT)
    assert len(refused.bodies) == 1  # no retry on a 4xx


def test_connection_refused_is_retryable():
    receiver = Receiver()
    url = receiver.url
    receiver.close()  # nothing listens there any more
    with pytest.raises(RetryableError, match="connection failed"):
        WebhookNotifier(url, retries=1, backoff=0, sleep=lambda s: None).notify(INCIDENT)


def test_teams_and_slack_formats(receiver_factory):
    receiver = receiver_factory()
    WebhookNotifier(receiver.url, "teams").notify(INCIDENT)
    WebhookNotifier(receiver.url, "slack").notify(INCIDENT)
    teams, slack = receiver.bodies[0][1], receiver.bodies[1][1]
    card = teams["attachments"][0]["content"]
    assert teams["type"] == "message" and card["type"] == "AdaptiveCard"
    assert {"title": "breached", "value": "distance, dataset"} in card["body"][1]["facts"]
    assert slack["text"].startswith("[warning] data_drift incident opened on flights-delay")
    assert "*incident_id*: i-1" in slack["blocks"][1]["text"]["text"]


def test_a_redelivered_event_notifies_once(tmp_path, receiver_factory):
    receiver = receiver_factory()
    store = SqliteStateStore(tmp_path / "state.sqlite")
    envelope = new_event("mlops.incident.changed.v1", INCIDENT, id=event_id("incident.changed", "i-1", "opened"))
    notifier = WebhookNotifier(receiver.url)
    assert handle_incident_changed(envelope, notifier, store) is True
    assert handle_incident_changed(envelope, notifier, store) is False
    assert len(receiver.bodies) == 1
    store.close()


def test_a_failed_delivery_is_not_marked_done(tmp_path, receiver_factory):
    receiver = receiver_factory([500, 500])
    store = SqliteStateStore(tmp_path / "state.sqlite")
    envelope = new_event("mlops.incident.changed.v1", INCIDENT, id="e-1")
    notifier = WebhookNotifier(receiver.url, retries=1, backoff=0, sleep=lambda s: None)
    with pytest.raises(RetryableError):
        handle_incident_changed(envelope, notifier, store)
    assert handle_incident_changed(envelope, notifier, store) is True  # the redelivery gets through
    assert [s for s, _ in receiver.bodies] == [500, 500, 200]
    store.close()


def test_log_notifier_writes_one_line(caplog):
    with caplog.at_level(logging.INFO, logger="mlops.alerts"):
        LogNotifier(logging.getLogger("mlops.alerts")).notify(INCIDENT)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "data_drift incident opened" in record.getMessage()
