"""Check results as Azure Monitor custom metrics, through azure-core's real pipeline (token policy, retries) with a
recording transport at the network edge answering as the custom metrics endpoint does."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from azure.core.pipeline.transport import HttpTransport

from core.errors import PermanentError, RetryableError
from monitors.results import AzureMonitorCustomMetrics, endpoint_resource_id, metric_series
from tests.contract.loganalytics_fake import FakeCredential, _response

RECORD = {
    "check_id": "c-1", "monitor": "flights-delay", "endpoint": {"name": "flights", "deployment": None}, "rows": 900,
    "rejected": {"not_json": 2, "wrong_type": 1}, "summary": {"drift_share": 0.25},
    "findings": [
        {"signal": "data_drift", "name": "temp", "statistic": 0.4, "breached": True,
         "details": {"calibrated": {"effect": 0.3, "floor": 0.1}}},
        {"signal": "data_drift", "name": "distance", "statistic": 0.01, "breached": False,
         "details": {"calibrated": {"effect": 0.02, "floor": 0.1}}},
        {"signal": "data_drift", "name": "dataset", "statistic": 0.25, "breached": True, "details": {}},
        {"signal": "performance", "name": "auc", "statistic": 0.71, "breached": False, "details": {}},
        {"signal": "health", "name": "p95_latency_ms", "statistic": None, "breached": False,
         "details": {"insufficient": True}},
    ],
}
NOW = datetime(2026, 3, 1, 12, 0, 7, tzinfo=UTC)
RESOURCE = endpoint_resource_id("sub-1", "ml-rg", "ml-ws", "flights")


class FakeMetricsEndpoint(HttpTransport):
    def __init__(self, statuses=()):
        self.statuses, self.received = list(statuses), []

    def send(self, request, **kwargs):
        self.received.append((request.url, dict(request.headers), json.loads(request.content)))
        status = self.statuses.pop(0) if self.statuses else 200
        body = b"" if status == 200 else json.dumps({"error": {"code": "x", "message": "nope"}}).encode()
        return _response(request, status, body, {"Retry-After": "0"} if status in (429, 503) else {})

    def open(self):
        pass

    def close(self):
        pass

    def __exit__(self, *args):
        pass


def sink(transport):
    return AzureMonitorCustomMetrics("WestEurope", lambda endpoint: endpoint_resource_id(
        "sub-1", "ml-rg", "ml-ws", endpoint), credential=FakeCredential(), transport=transport, now=lambda: NOW)


def test_each_series_goes_to_the_endpoint_resource_with_a_token():
    transport = FakeMetricsEndpoint()
    assert sink(transport).publish(RECORD) == len(metric_series(RECORD)) == 8
    url, headers, body = transport.received[0]
    assert url == f"https://westeurope.monitoring.azure.com{RESOURCE}/metrics"
    assert headers["Authorization"] == "Bearer fake-token" and headers["Content-Type"] == "application/json"
    assert body == {"time": "2026-03-01T12:00:07Z", "data": {"baseData": {
        "metric": "DriftShare", "namespace": "mlops/monitoring", "dimNames": ["Monitor"],
        "series": [{"dimValues": ["flights-delay"], "min": 0.25, "max": 0.25, "sum": 0.25, "count": 1}]}}}
    sent = {(b["data"]["baseData"]["metric"], tuple(b["data"]["baseData"]["series"][0]["dimValues"])):
            b["data"]["baseData"]["series"][0]["sum"] for _, _, b in transport.received}
    assert sent[("FeatureEffectRatio", ("flights-delay", "temp"))] == pytest.approx(3.0)
    assert sent[("SignalBreached", ("flights-delay", "data_drift"))] == 1.0
    assert sent[("SignalBreached", ("flights-delay", "performance"))] == 0.0
    assert ("SignalBreached", ("flights-delay", "health")) not in sent  # not judged: no latency in this window
    assert sent[("PerformanceMetric", ("flights-delay", "auc"))] == 0.71
    assert sent[("RowsRejected", ("flights-delay",))] == 3.0


def test_throttling_is_retried_then_retryable_and_a_refusal_is_permanent():
    transport = FakeMetricsEndpoint([429, 200])
    assert sink(transport).publish(RECORD) == 8  # azure-core's retry policy absorbed one 429
    with pytest.raises(RetryableError):
        sink(FakeMetricsEndpoint([503, 503, 503])).publish(RECORD)
    with pytest.raises(PermanentError, match="Monitoring Metrics Publisher"):
        sink(FakeMetricsEndpoint([403])).publish(RECORD)
