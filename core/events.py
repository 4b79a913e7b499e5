"""CloudEvents 1.0 envelope, the registry of event types, and their JSON encoding.

Ids are deterministic where the cause is: `event_id("check", monitor, window)` is the same on every
timer re-run or redelivery, so the bus's duplicate detection and the handlers' inbox absorb repeats.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Mapping

from core.errors import MalformedEvent, UnknownEventType
from core.plain import plain
from core.types import iso, parse_time

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
SOURCE = "/mlops/monitor"


@dataclass(frozen=True)
class EventType:
    type: str
    required: tuple[str, ...]
    doc: str


# Within a version, changes are additive: new optional fields only. A breaking change is a new vN.
REGISTRY: dict[str, EventType] = {
    t.type: t
    for t in (
        EventType("mlops.check.requested.v1", ("monitor", "window_start", "window_end"),
                  "A check of one monitor over one window was asked for (timer, HTTP or backfill)."),
        EventType("mlops.check.completed.v1", ("monitor", "check_id", "window_start", "window_end", "status"),
                  "A check finished; its record is in the state store."),
        EventType("mlops.drift.detected.v1", ("monitor", "check_id", "incident_id", "endpoint", "window_start",
                                              "window_end", "findings"),
                  "An alert policy opened or updated an incident; carries the evidence."),
        EventType("mlops.incident.changed.v1", ("monitor", "incident_id", "status", "signal"),
                  "An incident was opened, updated or resolved (one notification each)."),
        EventType("mlops.report.requested.v1", ("check_id", "monitor"),
                  "A check's HTML report was asked for and is not built yet; the reports consumer builds it."),
        EventType("mlops.retrain.requested.v1", ("endpoint", "reason", "trigger"),
                  "Retraining of an endpoint's model was asked for (drift policy or HTTP)."),
        EventType("mlops.retrain.started.v1", ("run_id", "endpoint"),
                  "A retraining pipeline run was submitted."),
        EventType("mlops.retrain.completed.v1", ("run_id", "endpoint", "status"),
                  "A retraining pipeline run reached a terminal state."),
        EventType("mlops.challenger.accepted.v1", ("run_id", "endpoint", "candidate", "gate"),
                  "The challenger beat the champion; deployment may begin."),
        EventType("mlops.challenger.rejected.v1", ("run_id", "endpoint", "candidate", "gate"),
                  "The challenger did not beat the champion; the champion stays."),
        EventType("mlops.canary.started.v1", ("run_id", "endpoint", "candidate", "traffic"),
                  "A canary deployment took a share of traffic; its bake period began."),
        EventType("mlops.model.promoted.v1", ("run_id", "endpoint", "candidate", "traffic"),
                  "The canary took 100% of traffic; the previous deployment was removed."),
        EventType("mlops.model.rolled_back.v1", ("run_id", "endpoint", "candidate", "traffic", "reason"),
                  "The canary misbehaved and was removed; traffic is back on the champion."),
    )
}


@dataclass(frozen=True)
class Envelope:
    id: str
    type: str
    source: str
    subject: str
    time: str
    data: Mapping[str, Any]
    specversion: str = SPECVERSION
    datacontenttype: str = CONTENT_TYPE
    correlationid: str | None = None
    causationid: str | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def caused(self, type_: str, data: Mapping[str, Any], *, id: str, subject: str | None = None,
               time: datetime | None = None) -> "Envelope":
        """A follow-up event: same correlation, caused by this one."""
        return new_event(type_, data, id=id, subject=subject or self.subject, time=time,
                         correlationid=self.correlationid or self.id, causationid=self.id)

    def with_time(self, time: datetime) -> "Envelope":
        return replace(self, time=iso(time))


def event_id(*parts: object) -> str:
    """A stable id from the event's cause: the same parts always give the same id."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return str(uuid.UUID(hex=digest[:32], version=5))


def new_event(type_: str, data: Mapping[str, Any], *, id: str | None = None, subject: str = "",
              time: datetime | None = None, source: str = SOURCE, correlationid: str | None = None,
              causationid: str | None = None) -> Envelope:
    kind = REGISTRY.get(type_)
    if kind is None:
        raise UnknownEventType(f"unknown event type {type_!r}")
    _check_required(kind, data)
    plain_data = plain(data)  # strict JSON: NaN -> null, numpy -> Python; anything else is a TypeError
    return Envelope(id=id or str(uuid.uuid4()), type=type_, source=source, subject=subject,
                    time=iso(time or datetime.now(UTC)), data=plain_data,
                    correlationid=correlationid, causationid=causationid)


def encode(envelope: Envelope) -> bytes:
    doc = {
        "specversion": envelope.specversion, "id": envelope.id, "type": envelope.type,
        "source": envelope.source, "subject": envelope.subject, "time": envelope.time,
        "datacontenttype": envelope.datacontenttype, "data": envelope.data,
    }
    if envelope.correlationid:
        doc["correlationid"] = envelope.correlationid
    if envelope.causationid:
        doc["causationid"] = envelope.causationid
    doc.update(envelope.extensions)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


_ATTRS = {"specversion", "id", "type", "source", "subject", "time", "datacontenttype", "data",
          "correlationid", "causationid"}


def decode(body: bytes | str) -> Envelope:
    """Bytes from the bus -> Envelope. Anything malformed raises a permanent error naming why."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedEvent("body is not a JSON object")
    for attr in ("id", "type", "source", "time"):
        if not isinstance(doc.get(attr), str) or not doc[attr]:
            raise MalformedEvent(f"attribute {attr!r} is missing or not a non-empty string")
    if doc.get("specversion") != SPECVERSION:
        raise MalformedEvent(f"specversion must be {SPECVERSION!r}, got {doc.get('specversion')!r}")
    kind = REGISTRY.get(doc["type"])
    if kind is None:
        raise UnknownEventType(f"unknown event type {doc['type']!r}")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise MalformedEvent("attribute 'data' must be a JSON object")
    _check_required(kind, data)
    _event_time(doc["time"])
    return Envelope(
        id=doc["id"], type=doc["type"], source=doc["source"], subject=doc.get("subject") or "",
        time=doc["time"], data=data, datacontenttype=doc.get("datacontenttype") or CONTENT_TYPE,
        correlationid=doc.get("correlationid"), causationid=doc.get("causationid"),
        extensions={k: v for k, v in doc.items() if k not in _ATTRS},
    )


def _check_required(kind: EventType, data: Mapping[str, Any]) -> None:
    missing = [name for name in kind.required if name not in data]
    if missing:
        raise MalformedEvent(f"{kind.type}: data is missing {', '.join(missing)}")


def _event_time(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise MalformedEvent(f"attribute 'time' is not RFC 3339 with a timezone: {text!r}") from exc
