"""Endpoint health from telemetry: server error rate and p95 latency.

The limits are service levels (absolute: the training data knows nothing of latency). Under the default
`calibrated` policy a window breaches a limit only when it shows it beyond its sampling noise: the
number of server errors, or of requests slower than the latency limit, is improbable (one-sided
binomial test at `alpha`) if the endpoint were exactly at its limit. Three slow requests out of forty
do not page anyone; a steady 8% error rate over a day does. `threshold` compares the raw values.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.types import Finding, Severity, TelemetryBatch

SIGNAL = "health"
P95 = 0.05  # the share of requests a p95 latency limit allows above it


@dataclass(frozen=True)
class HealthEvaluator:
    max_error_rate: float = 0.05
    max_p95_latency_ms: float = 1000.0
    severity: Severity = Severity.CRITICAL
    name: str = SIGNAL
    policy: str = "calibrated"  # calibrated | threshold
    alpha: float = 0.001
    min_rows: int = 30

    def fit(self, reference: object = None) -> "FittedHealth":
        return FittedHealth(self)  # health needs no reference: its limits are service levels


@dataclass(frozen=True)
class FittedHealth:
    config: HealthEvaluator

    def evaluate(self, current: TelemetryBatch) -> list[Finding]:
        frame, cfg = current.frame, self.config
        if len(frame) < cfg.min_rows:
            return [Finding(SIGNAL, "requests", float(len(frame)), float(cfg.min_rows), False,
                            details={"insufficient": True, "note": f"insufficient data: {len(frame)} requests in "
                                                                   f"the window, at least {cfg.min_rows} needed"})]
        return [self._errors(frame), self._latency(frame)]

    def _errors(self, frame) -> Finding:
        import pandas as pd

        cfg = self.config
        if "status_code" not in frame:
            return Finding(SIGNAL, "error_rate", None, cfg.max_error_rate, False,
                           details={"note": "telemetry has no status_code column", "insufficient": True})
        codes = pd.to_numeric(frame["status_code"], errors="coerce")
        # Server errors are the endpoint's fault; 4xx are the caller's and are reported, not alerted on.
        errors = int((codes >= 500).sum())
        rate = errors / len(frame)
        client = float(((codes >= 400) & (codes < 500)).mean())
        breached, p_value = self._judge(rate > cfg.max_error_rate, errors, len(frame), cfg.max_error_rate)
        return Finding(SIGNAL, "error_rate", rate, cfg.max_error_rate, breached,
                       cfg.severity if breached else Severity.INFO, method=cfg.policy, p_value=p_value,
                       details={"requests": len(frame), "server_errors": errors, "client_error_rate": client,
                                "policy": cfg.policy, "alpha": cfg.alpha})

    def _latency(self, frame) -> Finding:
        import numpy as np
        import pandas as pd

        cfg = self.config
        latency = pd.to_numeric(frame["latency_ms"], errors="coerce").dropna() if "latency_ms" in frame else None
        if latency is None or latency.empty:
            return Finding(SIGNAL, "p95_latency_ms", None, cfg.max_p95_latency_ms, False,
                           details={"note": "telemetry has no latency_ms values", "insufficient": True})
        values = latency.to_numpy(dtype=float)
        p95 = float(np.percentile(values, 95))
        slow = int((values > cfg.max_p95_latency_ms).sum())
        breached, p_value = self._judge(p95 > cfg.max_p95_latency_ms, slow, values.size, P95)
        return Finding(SIGNAL, "p95_latency_ms", p95, cfg.max_p95_latency_ms, breached,
                       cfg.severity if breached else Severity.INFO, method=cfg.policy, p_value=p_value,
                       details={"p50_latency_ms": float(np.percentile(values, 50)), "samples": int(values.size),
                                "slower_than_limit": slow, "policy": cfg.policy, "alpha": cfg.alpha})

    def _judge(self, over: bool, hits: int, trials: int, limit: float) -> tuple[bool, float | None]:
        """(breached, p-value): the raw comparison, or the binomial test of `hits` against the limit."""
        if self.config.policy != "calibrated":
            return over, None
        from monitors.signals.rates import binom_sf  # not scipy.stats: 1-2 s of a cold check's imports

        p_value = binom_sf(hits - 1, trials, limit) if hits else 1.0
        return over and p_value < self.config.alpha, p_value
