"""Bus topology: one topic, one subscription per consumer, filtered on the message subject (= event type).

The same table provisions Azure (see infra/) and the local SQLite bus, so both route identically.
"""
from __future__ import annotations

TOPIC = "mlops-events"

SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "run-check": ("mlops.check.requested.v1",),
    # incidents, and the retraining loop's outcomes a person is told about (monitors/messages.py)
    "alerts": ("mlops.incident.changed.v1", "mlops.retrain.started.v1", "mlops.retrain.completed.v1",
               "mlops.challenger.rejected.v1", "mlops.model.rolled_back.v1", "mlops.model.promoted.v1"),
    "reports": ("mlops.report.requested.v1",),  # a check's HTML report, built off the request path
    "retrain": ("mlops.drift.detected.v1", "mlops.retrain.requested.v1"),
    "deploy": ("mlops.retrain.completed.v1", "mlops.challenger.accepted.v1"),
    "rebaseline": ("mlops.model.promoted.v1",),  # monitors take the promoted model's reference
    "results": ("mlops.check.completed.v1",),  # a check's metrics to Azure Monitor (when configured)
    "audit": (),  # empty filter: every event, for the audit trail
}
