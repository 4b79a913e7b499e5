"""Endpoint health from telemetry: server error rate and p95 latency."""
from __future__ import annotations

from dataclasses import dataclass

from core.types import Finding, Severity, TelemetryBatch

SIGNAL = "health"


@dataclass(frozen=True)
class HealthEvaluator:
    max_error_rate: float = 0.05
    max_p95_latency_ms: float = 1000.0
    severity: Severity = Severity.CRITICAL
    name: str = SIGNAL

    def fit(self, reference: object = None) -> "FittedHealth":
        return FittedHealth(self)  # health needs no reference: its thresholds are absolute


@dataclass(frozen=True)
class FittedHealth:
    config: HealthEvaluator

    def evaluate(self, current: TelemetryBatch) -> list[Finding]:
        frame = current.frame
        if len(frame) == 0:
            return [Finding(SIGNAL, "requests", 0.0, None, False, details={"note": "no requests in the window"})]
        return [self._errors(frame), self._latency(frame)]

    def _errors(self, frame) -> Finding:
        import pandas as pd

        cfg = self.config
        if "status_code" not in frame:
            return Finding(SIGNAL, "error_rate", None, cfg.max_error_rate, False,
                           details={"note": "telemetry has no status_code column", "insufficient": True})
        codes = pd.to_numeric(frame["status_code"], errors="coerce")
        # Server errors are the endpoint's fault; 4xx are the caller's and are reported, not alerted on.
        rate = float((codes >= 500).mean())
        client = float(((codes >= 400) & (codes < 500)).mean())
        breached = rate > cfg.max_error_rate
        return Finding(SIGNAL, "error_rate", rate, cfg.max_error_rate, breached,
                       cfg.severity if breached else Severity.INFO,
                       details={"requests": len(frame), "server_errors": int((codes >= 500).sum()),
                                "client_error_rate": client})

    def _latency(self, frame) -> Finding:
        import numpy as np
        import pandas as pd

        cfg = self.config
        latency = pd.to_numeric(frame["latency_ms"], errors="coerce").dropna() if "latency_ms" in frame else None
        if latency is None or latency.empty:
            return Finding(SIGNAL, "p95_latency_ms", None, cfg.max_p95_latency_ms, False,
                           details={"note": "telemetry has no latency_ms values", "insufficient": True})
        p95 = float(np.percentile(latency.to_numpy(dtype=float), 95))
        breached = p95 > cfg.max_p95_latency_ms
        return Finding(SIGNAL, "p95_latency_ms", p95, cfg.max_p95_latency_ms, breached,
                       cfg.severity if breached else Severity.INFO,
                       details={"p50_latency_ms": float(np.percentile(latency, 50)), "samples": int(latency.size)})
