"""Notifiers: one message per incident change (opened, updated, resolved), never one per window.

`handle_incident_changed` is the `alerts` consumer: the inbox makes a redelivered event a no-op, and
the inbox entry is written only after the notifier succeeded, so a failed delivery is retried.
"""
from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Mapping

from core.clock import Clock, SystemClock
from core.errors import PermanentError, RetryableError, ValidationFailed
from core.events import Envelope
from core.ports import Notifier, StateStore
from core.records import already_processed, mark_processed
from core.retry import retry_transient

FORMATS = ("json", "teams", "slack")
_COLOURS = {"opened": "attention", "updated": "warning", "resolved": "good"}


def summary(incident: Mapping[str, Any]) -> str:
    """One human line: '[critical] data_drift incident opened on flights-delay (window ...)'."""
    window = incident.get("window_start"), incident.get("window_end")
    where = f" (window {window[0]} - {window[1]})" if all(window) else ""
    return (f"[{incident.get('severity', 'info')}] {incident.get('signal')} incident {incident.get('status')} "
            f"on {incident.get('monitor')}{where}")


def _facts(incident: Mapping[str, Any]) -> list[tuple[str, str]]:
    keys = ("monitor", "signal", "status", "severity", "endpoint", "model_version", "window_start", "window_end",
            "incident_id", "check_id")
    facts = [(k, str(incident[k])) for k in keys if incident.get(k) not in (None, "")]
    breached = incident.get("breached")
    if breached:
        facts.append(("breached", ", ".join(map(str, breached))))
    return facts


def teams_payload(incident: Mapping[str, Any]) -> dict[str, Any]:
    """A Teams Workflows message carrying an Adaptive Card."""
    card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.4", "body": [
                {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": True, "text": summary(incident),
                 "color": _COLOURS.get(str(incident.get("status")), "default")},
                {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _facts(incident)]}]}
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


def slack_payload(incident: Mapping[str, Any]) -> dict[str, Any]:
    lines = "\n".join(f"*{k}*: {v}" for k, v in _facts(incident))
    return {"text": summary(incident), "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": summary(incident)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": lines}}]}


class WebhookNotifier:
    """POST one JSON document per incident change; retries 5xx, 429 and connection errors with backoff."""

    def __init__(self, url: str, format: str = "json", *, retries: int = 3, backoff: float = 0.5,
                 timeout: float = 10.0, sleep: Callable[[float], None] = time.sleep) -> None:
        if format not in FORMATS:
            raise ValidationFailed(f"webhook format must be one of {', '.join(FORMATS)}, not {format!r}",
                                   field="format")
        if not url.startswith(("http://", "https://")):
            raise ValidationFailed(f"webhook url must be http(s), got {url!r}", field="url")
        self.url, self.format, self.retries, self.backoff = url, format, retries, backoff
        self.timeout, self._sleep = timeout, sleep

    def payload(self, incident: Mapping[str, Any]) -> dict[str, Any]:
        if self.format == "teams":
            return teams_payload(incident)
        if self.format == "slack":
            return slack_payload(incident)
        return {"summary": summary(incident), **incident}

    def notify(self, incident: Mapping[str, Any]) -> None:
        body = json.dumps(self.payload(incident), default=str).encode()
        try:
            retry_transient(lambda: self._post(body), on=(RetryableError,), attempts=self.retries + 1,
                            base=self.backoff, sleep=self._sleep, what=f"webhook {self.url}")
        except RetryableError as exc:
            raise RetryableError(f"webhook {self.url} failed after {self.retries + 1} attempts: {exc}") from exc

    def _post(self, body: bytes) -> None:
        """Raises RetryableError when worth retrying, PermanentError when retrying cannot help."""
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code == 429:
                raise RetryableError(f"HTTP {exc.code}") from exc
            raise PermanentError(f"webhook {self.url} refused the message: HTTP {exc.code} {exc.reason}",
                                 reason="WebhookRejected") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise RetryableError(f"connection failed: {getattr(exc, 'reason', exc)}") from exc


class LogNotifier:
    """Writes one log line per incident change (the default when no webhook is configured)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def notify(self, incident: Mapping[str, Any]) -> None:
        level = logging.INFO if incident.get("status") == "resolved" else logging.WARNING
        self.logger.log(level, "%s %s", summary(incident), json.dumps(dict(incident), default=str, sort_keys=True))


def handle_incident_changed(envelope: Envelope, notifier: Notifier, store: StateStore, *,
                            clock: Clock | None = None, consumer: str = "alerts") -> bool:
    """Notify once per `mlops.incident.changed.v1` event; False when it was already delivered."""
    if envelope.type != "mlops.incident.changed.v1":
        raise ValidationFailed(f"{consumer} handles mlops.incident.changed.v1, not {envelope.type}", field="type")
    if already_processed(store, consumer, envelope.id):
        return False
    notifier.notify(dict(envelope.data))
    return mark_processed(store, consumer, envelope.id, (clock or SystemClock()).now())
