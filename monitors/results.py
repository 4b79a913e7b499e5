"""A check's results where other tools look: Azure Monitor custom metrics on the endpoint's own resource, and
optionally evidently snapshots in an evidently workspace (`evidently ui --workspace <folder>` shows the checks).

Azure Monitor alert rules and workbooks then use them like any platform metric of the online endpoint (namespace
`mlops/monitoring`): `DriftShare` {Monitor}, `FeatureEffectRatio` {Monitor, Feature} (effect over its floor, 1 and
above is a drift the calibrated policy would call), `SignalBreached` {Monitor, Signal} (1 or 0 per signal judged),
`PerformanceMetric` {Monitor, Metric}
(realized performance, e.g. `auc`; a label-free estimate as `auc (estimated)`), `RowsChecked` and
`RowsRejected` {Monitor}.

The custom metrics API takes values stamped within the last 20 minutes, so each is stamped with the time it is
sent: what the latest check of a monitor found. It is called with the app's identity (Monitoring Metrics Publisher
on the workspace) through azure-core: 429 and 5xx are retryable (the bus delivers the event again), other refusals
are permanent and name the metric.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Callable, Mapping

from core.errors import PermanentError, RetryableError

NAMESPACE = "mlops/monitoring"
SCOPE = "https://monitoring.azure.com/.default"


def metric_series(record: Mapping[str, Any]) -> list[tuple[str, dict[str, str], float]]:
    """(metric, dimensions, value) of one check record: aggregates only, never a telemetry row."""
    monitor = str(record["monitor"])
    out: list[tuple[str, dict[str, str], float]] = []
    summary = record.get("summary") or {}
    if isinstance(summary.get("drift_share"), (int, float)):
        out.append(("DriftShare", {"Monitor": monitor}, float(summary["drift_share"])))
    judged: dict[str, bool] = {}
    for finding in record.get("findings") or []:
        signal, details = str(finding.get("signal")), finding.get("details") or {}
        if details.get("insufficient"):
            continue
        judged[signal] = judged.get(signal, False) or bool(finding.get("breached"))
        calibrated = details.get("calibrated") or {}
        if signal == "data_drift" and finding.get("name") != "dataset" and calibrated.get("floor"):
            ratio = float(calibrated["effect"]) / float(calibrated["floor"])
            out.append(("FeatureEffectRatio", {"Monitor": monitor, "Feature": str(finding["name"])}, ratio))
        if "performance" in signal and isinstance(finding.get("statistic"), (int, float)):
            metric = str(finding["name"]) + ("" if signal == "performance" else f" ({signal.split('_')[0]})")
            out.append(("PerformanceMetric", {"Monitor": monitor, "Metric": metric}, float(finding["statistic"])))
    out += [("SignalBreached", {"Monitor": monitor, "Signal": s}, float(b)) for s, b in sorted(judged.items())]
    out.append(("RowsChecked", {"Monitor": monitor}, float(record.get("rows") or 0)))
    out.append(("RowsRejected", {"Monitor": monitor}, float(sum((record.get("rejected") or {}).values()))))
    return out


def endpoint_resource_id(subscription: str, resource_group: str, workspace: str, endpoint: str) -> str:
    return (f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{workspace}/onlineEndpoints/{endpoint}")


class AzureMonitorCustomMetrics:
    """Sends a check's metric series to `https://<region>.monitoring.azure.com<resource id>/metrics`.

    `resource_id(endpoint)` names the endpoint's resource; `transport` replaces azure-core's HTTP transport
    (tests put a recording one at the network edge); `now` stamps the values."""

    def __init__(self, region: str, resource_id: Callable[[str], str], *, credential: Any = None,
                 transport: Any = None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.region, self.resource_id, self.now = region.strip().lower(), resource_id, now
        self._credential, self._transport = credential, transport
        self._client: Any = None

    def _pipeline(self) -> Any:
        if self._client is None:
            from azure.core import PipelineClient
            from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy

            credential = self._credential
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            policies = [RetryPolicy(retry_total=2), BearerTokenCredentialPolicy(credential, SCOPE)]
            kwargs = {"transport": self._transport} if self._transport is not None else {}
            self._client = PipelineClient(base_url=f"https://{self.region}.monitoring.azure.com",
                                          policies=policies, **kwargs)
        return self._client

    def publish(self, record: Mapping[str, Any]) -> int:
        """Send every series of the check; returns how many were sent."""
        endpoint = str((record.get("endpoint") or {}).get("name") or "")
        if not endpoint:
            raise PermanentError(f"check {record.get('check_id')} names no endpoint", reason="NoEndpoint")
        url = f"https://{self.region}.monitoring.azure.com{self.resource_id(endpoint)}/metrics"
        stamp = self.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        series = metric_series(record)
        for metric, dims, value in series:
            body = {"time": stamp, "data": {"baseData": {
                "metric": metric, "namespace": NAMESPACE, "dimNames": list(dims),
                "series": [{"dimValues": list(dims.values()), "min": value, "max": value, "sum": value,
                            "count": 1}]}}}
            self._send(url, metric, body)
        return len(series)

    def _send(self, url: str, metric: str, body: dict[str, Any]) -> None:
        from azure.core.exceptions import AzureError
        from azure.core.rest import HttpRequest

        request = HttpRequest("POST", url, headers={"Content-Type": "application/json"}, content=json.dumps(body))
        try:
            response = self._pipeline().send_request(request)
        except AzureError as exc:
            raise RetryableError(f"Azure Monitor metrics: sending {metric}: {exc}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise RetryableError(f"Azure Monitor metrics: {metric}: {status} {response.text()[:300]}")
        if status >= 400:
            raise PermanentError(f"Azure Monitor metrics refused {metric}: {status} {response.text()[:300]} "
                                 "(does the app's identity have Monitoring Metrics Publisher on the workspace?)")


class EvidentlySnapshots:
    """Each check's window as an evidently data drift snapshot in a local evidently workspace, one project per
    monitor, stamped with the window's end: `evidently ui --workspace <folder>` then shows them over time.

    Built on the check's own telemetry window and reference (through `window_frames`, which the composition root
    gives: monitor, window -> (reference frame, current frame, spec)), with evidently imported here only."""

    def __init__(self, folder: str | Any, window_frames: Callable[[str, Any], tuple[Any, Any, Any]]) -> None:
        self.folder, self.window_frames = str(folder), window_frames
        self._workspace: Any = None

    def _projects(self) -> tuple[Any, dict[str, Any]]:
        if self._workspace is None:
            from evidently.ui.workspace import Workspace

            self._workspace = Workspace(self.folder)
        return self._workspace, {p.name: p for p in self._workspace.list_projects()}

    def publish(self, record: Mapping[str, Any]) -> int:
        from core.types import Window, parse_time
        from monitors.report import drift_snapshot

        window = Window(parse_time(record["window"]["start"]), parse_time(record["window"]["end"]))
        reference, current, spec = self.window_frames(str(record["monitor"]), window)
        if len(current) == 0:
            return 0  # an empty window has nothing to draw
        snapshot = drift_snapshot(reference, current, spec, timestamp=window.end.replace(tzinfo=None),
                                  tags=[str(record.get("status")), *record.get("breached_signals", [])],
                                  name=f"{record['monitor']} {window.key()}")
        workspace, projects = self._projects()
        project = projects.get(spec.name) or workspace.create_project(spec.name, description=(
            f"Checks of monitor {spec.name} (endpoint {spec.endpoint.name}), one run per checked window"))
        workspace.add_run(project.id, snapshot)
        return 1
