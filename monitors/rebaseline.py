"""The reference follows the model in production: a promotion re-baselines the endpoint's monitors.

mlops.model.promoted.v1 carries the promoted version and, when its pipeline wrote one, the reference data
it was trained and evaluated on (scored by that model). Each monitor of the endpoint then compares traffic
with that reference instead of its spec's own, until the next promotion. The override is a record
(kind "reference", key = monitor name); the spec file is not rewritten.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ValidationFailed
from core.events import Envelope
from core.records import already_processed, mark_processed, put
from core.types import parse_time

if TYPE_CHECKING:
    from core.ports import StateStore
    from monitors.check import CheckDeps
    from monitors.spec import MonitorSpec

PROMOTED = "mlops.model.promoted.v1"
REFERENCE = "reference"  # record kind: the reference override of one monitor
CONSUMER = "rebaseline"


def on_model_promoted(envelope: Envelope, deps: "CheckDeps") -> list[str]:
    """Point the endpoint's monitors at the promoted model's reference; returns the monitors changed.

    A redelivery changes nothing (inbox); an older promotion arriving late does not replace a newer one.
    """
    if envelope.type != PROMOTED:
        raise ValidationFailed(f"on_model_promoted handles {PROMOTED}, not {envelope.type}", field="type")
    if already_processed(deps.store, CONSUMER, envelope.id):
        return []
    data = envelope.data
    endpoint, uri = data.get("endpoint"), data.get("reference_uri")
    if not isinstance(endpoint, str) or not endpoint:
        raise ValidationFailed("model.promoted event has no endpoint", field="endpoint")
    changed = []
    if uri:
        override = {"uri": str(uri), "model_version": data.get("model_version"), "since": envelope.time,
                    "event_id": envelope.id}
        for spec in deps.specs.all():
            if spec.endpoint.name == endpoint and _newer(deps.store, spec.name, envelope.time):
                put(deps.store, REFERENCE, spec.name, override)
                changed.append(spec.name)
    mark_processed(deps.store, CONSUMER, envelope.id, deps.clock.now())
    return changed


def _newer(store: "StateStore", monitor: str, since: str) -> bool:
    doc = store.get(REFERENCE, monitor)
    return doc is None or parse_time(str(doc.data["since"])) <= parse_time(since)


def active_reference(spec: "MonitorSpec", store: "StateStore", base_dir: Path) -> dict[str, Any]:
    """The reference a check of `spec` uses now: {"uri", "model_version", "base_dir"}.

    The promoted model's (absolute path or azureml: asset) if one was recorded, else the spec's own
    (relative to the spec's folder).
    """
    doc = store.get(REFERENCE, spec.name)
    if doc is not None:
        return {"uri": doc.data["uri"], "model_version": doc.data.get("model_version"), "base_dir": base_dir}
    return {"uri": spec.reference.uri, "model_version": None,
            "base_dir": spec.base_dir if spec.source else base_dir}


def not_ready(spec: "MonitorSpec", store: "StateStore", base_dir: Path) -> str | None:
    """Why `spec` cannot be checked now, or None. A monitor paused in its spec, or whose reference data is a
    local file that does not exist (a fresh checkout before `make demo`), is left out by the scheduler and its
    checks are refused with this reason, rather than failing on every tick."""
    if not spec.enabled:
        return "it is disabled in its spec (enabled: false)"
    active = active_reference(spec, store, base_dir)
    uri = str(active["uri"])
    if uri.startswith("azureml:"):
        return None
    path = Path(uri) if Path(uri).is_absolute() else Path(active["base_dir"]) / uri
    if not path.exists():
        return f"its reference data {path} does not exist"
    return None
