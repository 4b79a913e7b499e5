"""Channels: where messages go (apprise's Teams, Slack, email, PagerDuty ...; a generic JSON webhook; the log).

`handle_event` is the `alerts` consumer. Each channel has its own inbox entry per event, written only
after that channel accepted the message: a channel that is down is retried when the event comes back,
the channels that already have it are not sent it twice. Incident updates go to the daily digest when
the monitor asks for one (`alert.digest`), never out on their own.

Channel URLs hold tokens. They are never logged, raised or stored: a channel is named by its kind and
host with the rest masked (`redact`), apprise URLs by apprise's own privacy form, and the inbox keys
by a hash of the URL.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from core.clock import Clock, SystemClock
from core.errors import ConfigurationError, PermanentError, RetryableError, ValidationFailed
from core.events import Envelope
from core.ports import Notifier, StateStore
from core.records import already_processed, mark_processed, put
from core.retry import retry_transient
from monitors.messages import INCIDENT, digest_message, message_for

log = logging.getLogger("mlops.alerts")
FORMATS = ("json", "teams", "slack")
DIGEST = "digest"  # record kind: incident updates waiting for the daily digest, key "<day>/<event id>"
_COLOURS = {"info": "default", "success": "good", "warning": "warning", "failure": "attention"}


def redact(url: str) -> str:
    """'https://hooks.slack.com/services/T0/B0/xyz' -> 'https://hooks.slack.com/…': kind and host only."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}/…" if parts.scheme else "<channel>"


def channel_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def teams_payload(message: Mapping[str, Any]) -> dict[str, Any]:
    """A Teams Workflows message carrying an Adaptive Card."""
    card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.4", "body": [
                {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": True, "text": message["title"],
                 "color": _COLOURS.get(str(message.get("level")), "default")},
                {"type": "TextBlock", "wrap": True, "text": message.get("text", "")},
                {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in message.get("facts", [])]}]}
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


def slack_payload(message: Mapping[str, Any]) -> dict[str, Any]:
    facts = "\n".join(f"*{k}*: {v}" for k, v in message.get("facts", []))
    return {"text": message["title"], "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": message["title"][:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": message.get("text", "")[:2900] or " "}},
        {"type": "section", "text": {"type": "mrkdwn", "text": facts or " "}}]}


def json_payload(message: Mapping[str, Any]) -> dict[str, Any]:
    """The generic webhook's document: the message, and the event's own data for machines."""
    return {"summary": message["title"], "kind": message["kind"], "level": message["level"],
            "text": message.get("text", ""), "facts": dict(message.get("facts", [])), "event": message.get("event"),
            **message.get("data", {})}


class WebhookNotifier:
    """POST one JSON document per message; retries 5xx, 429 and connection errors with backoff."""

    def __init__(self, url: str, format: str = "json", *, retries: int = 3, backoff: float = 0.5,
                 timeout: float = 10.0, sleep: Callable[[float], None] = time.sleep) -> None:
        if format not in FORMATS:
            raise ValidationFailed(f"webhook format must be one of {', '.join(FORMATS)}, not {format!r}",
                                   field="format")
        if not url.startswith(("http://", "https://")):
            raise ValidationFailed(f"webhook url must be http(s), got {redact(url)}", field="url")
        self._url, self.format, self.retries, self.backoff = url, format, retries, backoff
        self.timeout, self._sleep = timeout, sleep
        self.name = f"webhook {redact(url)}"
        self.id = channel_id(url)

    def payload(self, message: Mapping[str, Any]) -> dict[str, Any]:
        if self.format == "teams":
            return teams_payload(message)
        if self.format == "slack":
            return slack_payload(message)
        return json_payload(message)

    def notify(self, message: Mapping[str, Any]) -> None:
        body = json.dumps(self.payload(message), default=str).encode()
        try:
            retry_transient(lambda: self._post(body), on=(RetryableError,), attempts=self.retries + 1,
                            base=self.backoff, sleep=self._sleep, what=self.name)
        except RetryableError as exc:
            raise RetryableError(f"{self.name} failed after {self.retries + 1} attempts: {exc}") from None

    def _post(self, body: bytes) -> None:
        """Raises RetryableError when worth retrying, PermanentError when retrying cannot help."""
        request = urllib.request.Request(self._url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:  # `from None`: the exception's own text holds the URL
            if exc.code >= 500 or exc.code == 429:
                raise RetryableError(f"HTTP {exc.code}") from None
            raise PermanentError(f"{self.name} refused the message: HTTP {exc.code} {exc.reason}",
                                 reason="WebhookRejected") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise RetryableError(f"connection failed: {type(getattr(exc, 'reason', exc)).__name__}") from None


class AppriseNotifier:
    """One apprise URL (Teams, Slack, email, PagerDuty, ...): https://github.com/caronc/apprise/wiki.

    apprise's own log lines can quote a token (an invalid one, verbatim): they are kept out of our logs.
    """

    _TYPES = {"info": "info", "success": "success", "warning": "warning", "failure": "failure"}

    def __init__(self, url: str) -> None:
        import apprise  # lazy: about 0.8 s to import, and only the alerts consumer needs it

        self._apprise = apprise
        self._target = apprise.Apprise()
        with _quiet(apprise):
            added = self._target.add(url)
        if not added:
            scheme = url.split("://", 1)[0] if "://" in url else "?"
            raise ConfigurationError(f"apprise does not understand this notification URL of scheme {scheme!r} "
                                     f"(see https://github.com/caronc/apprise/wiki)")
        self.name = f"apprise {self._target[0].url(privacy=True).split('?', 1)[0]}"
        self.id = channel_id(url)

    def notify(self, message: Mapping[str, Any]) -> None:
        apprise = self._apprise
        body = message.get("text") or message["title"]
        kind = getattr(apprise.NotifyType, self._TYPES.get(str(message.get("level")), "info").upper())
        with _quiet(apprise):
            ok = self._target.notify(title=message["title"], body=body, notify_type=kind)
        if not ok:
            raise RetryableError(f"{self.name} did not accept the message")


@contextlib.contextmanager
def _quiet(apprise: Any):
    """apprise's log lines go to a capture that is dropped, not to the app's handlers."""
    logger = logging.getLogger("apprise")
    propagate = logger.propagate
    logger.propagate = False
    try:
        with apprise.LogCapture(level=logging.DEBUG):
            yield
    finally:
        logger.propagate = propagate


class LogNotifier:
    """Writes one log line per message (the default when no channel is configured)."""

    name, id = "log", "log"

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def notify(self, message: Mapping[str, Any]) -> None:
        level = logging.WARNING if message.get("level") in ("warning", "failure") else logging.INFO
        self.logger.log(level, "%s\n%s", message["title"], message.get("text", ""))


def channels_from(urls: Sequence[str], webhook_url: str | None, webhook_format: str,
                  logger: logging.Logger = log) -> list[Any]:
    """The configured channels: each apprise URL, the generic webhook; the log when there is none."""
    found: list[Any] = [AppriseNotifier(u) for u in urls if u.strip()]
    if webhook_url:
        found.append(WebhookNotifier(webhook_url, webhook_format))
    return found or [LogNotifier(logger)]


def handle_event(envelope: Envelope, channels: Sequence[Notifier], store: StateStore, *,
                 clock: Clock | None = None, consumer: str = "alerts") -> list[str]:
    """Send the event's message to every channel that has not had it; returns the channels sent to now."""
    now = (clock or SystemClock()).now()
    if envelope.type == INCIDENT and envelope.data.get("status") == "updated":
        if envelope.data.get("digest"):
            put(store, DIGEST, f"{now.date().isoformat()}/{envelope.id}", _digest_entry(envelope))
        return []
    message = message_for(envelope)
    if message is None:
        return []
    return deliver(message, envelope.id, channels, store, now, consumer)


def deliver(message: Mapping[str, Any], key: str, channels: Sequence[Any], store: StateStore, now: datetime,
            consumer: str = "alerts") -> list[str]:
    sent, retry, refused = [], [], None
    for channel in channels:
        inbox = f"{consumer}/{channel.id}"
        if already_processed(store, inbox, key):
            continue
        try:
            channel.notify(message)
        except RetryableError as exc:
            log.warning("%s: %s will be retried: %s", message["kind"], channel.name, exc)
            retry.append(str(exc))
            continue
        except PermanentError as exc:
            log.error("%s: %s refused it: %s", message["kind"], channel.name, exc)
            refused = refused or exc
            continue
        mark_processed(store, inbox, key, now)
        sent.append(channel.name)
    if retry:
        raise RetryableError(f"{len(retry)} channel(s) did not take {message['kind']}: {'; '.join(retry)}")
    if refused is not None:
        raise refused
    return sent


def send_digest(channels: Sequence[Any], store: StateStore, *, clock: Clock | None = None) -> int:
    """Timer: one message per past day of queued incident updates; returns how many updates went out."""
    today = (clock or SystemClock()).now().date()
    by_day: dict[str, list[tuple[str, Any]]] = {}
    for key, doc in store.list(DIGEST):
        day = key.split("/", 1)[0]
        if day < today.isoformat():
            by_day.setdefault(day, []).append((key, doc))
    sent = 0
    for day, docs in sorted(by_day.items()):
        entries = sorted((dict(d.data) for _, d in docs), key=lambda e: e.get("time", ""))
        deliver(digest_message(entries, day), f"digest-{day}", channels, store, (clock or SystemClock()).now())
        for key, doc in docs:
            store.delete(DIGEST, key, doc.etag)
        sent += len(entries)
    return sent


def _digest_entry(envelope: Envelope) -> dict[str, Any]:
    d = envelope.data
    return {"time": envelope.time, "monitor": d.get("monitor"), "incident_id": d.get("incident_id"),
            "signals": d.get("signals"), "severity": d.get("severity"), "highlights": d.get("highlights") or [],
            "window_end": d.get("window_end")}

