"""A check's HTML report, built in the background from exactly what the check used.

The check records its reference (uri, fingerprint, and a snapshot of the frame when the service keeps
a local data folder), the features' kinds, methods and thresholds, and its verdict. The report is built
from that record: the verdict section is the record itself, evidently's panels are drawn against the
snapshot (or the reference at its uri when its fingerprint still matches) and the same window.

`GET /api/checks/{id}/report` never renders in the request: it serves the stored report, or publishes
mlops.report.requested.v1 and answers 202 with where to look; the `reports` consumer builds it.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from core.errors import NotFound, ValidationFailed
from core.events import event_id, new_event
from core.files import write_atomic
from core.records import CHECK, require
from core.types import EndpointRef, Window, parse_time
from monitors.report import report_name

if TYPE_CHECKING:
    import pandas as pd

    from monitors.check import CheckDeps

REPORT_REQUESTED = "mlops.report.requested.v1"
log = logging.getLogger("mlops.reports")


def snapshot_reference(directory: Path | None, fingerprint: str, frame: "pd.DataFrame",
                       reference: Any = None) -> str | None:
    """The reference frame saved once per fingerprint, so a report can be drawn against it later. A
    reference read from one Parquet file (`reference.path`) is copied as is: the same frame, not written again
    (unless the file changed since it was read: then the frame is written)."""
    if directory is None or not fingerprint:
        return None
    path = Path(directory) / f"{fingerprint.replace(':', '-')}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        source = getattr(reference, "path", None)
        if isinstance(source, Path) and source.is_file() and source.suffix.lower() in (".parquet", ".pq"):
            with source.open("rb") as original:
                write_atomic(path, lambda handle: shutil.copyfileobj(original, handle, 1 << 20))
        if not path.exists() or reference.fingerprint != fingerprint:
            write_atomic(path, lambda handle: frame.to_parquet(handle, index=False))
    return str(path)


def stored_report(check_id: str, deps: "CheckDeps") -> bytes | None:
    """The built HTML report of a check, or None while it is not built. Unknown check: NotFound."""
    record = require(deps.store, CHECK, check_id).data
    try:
        return deps.reports.get(_name(record))
    except NotFound:
        return None


def request_report(check_id: str, deps: "CheckDeps") -> dict[str, Any]:
    """Ask the `reports` consumer to build it (one request per check: the event id is the check's)."""
    record = require(deps.store, CHECK, check_id).data
    deps.publisher.publish(new_event(REPORT_REQUESTED, {"check_id": check_id, "monitor": record["monitor"]},
                                     id=event_id("report.requested", check_id), subject=record["monitor"],
                                     time=deps.clock.now()))
    return {"check_id": check_id, "status": "building", "report_url": f"/api/checks/{check_id}/report"}


def build_report(check_id: str, deps: "CheckDeps") -> str:
    """Render and store the report of a recorded check; returns where it was stored."""
    from monitors.report_html import evidently_panels, render_check_html

    record = require(deps.store, CHECK, check_id).data
    frame, notes = reference_frame(record, deps)
    panels = None
    if frame is not None:
        batch = deps.telemetry.fetch(_endpoint(record), _window(record))
        if batch.rows != record.get("rows"):
            notes.append(f"the telemetry now holds {batch.rows} rows for this window; the check saw "
                         f"{record.get('rows')} (late rows): evidently's panels use what is there now")
        used = record.get("spec") or {}
        features = used.get("features") or []
        kinds = {f["name"]: f["kind"] for f in features}
        if batch.rows and kinds:
            panels = evidently_panels(frame, batch.frame, kinds,
                                      methods={f["name"]: f["method"] for f in features if f.get("method")},
                                      thresholds={f["name"]: f["threshold"] for f in features
                                                  if f.get("threshold") is not None},
                                      share=float(used.get("share", 0.5)))
    html = render_check_html(record, panels, note="; ".join(notes) or None)
    return deps.reports.put(_name(record), html, "text/html")


def reference_frame(record: Mapping[str, Any], deps: "CheckDeps") -> tuple["pd.DataFrame | None", list[str]]:
    """The reference the check used: its snapshot, or its uri if the content is still the same."""
    import pandas as pd

    from monitors.check import open_reference

    reference = record.get("reference") or {}
    snapshot = reference.get("snapshot")
    if snapshot and Path(snapshot).exists():
        return pd.read_parquet(snapshot), []
    fingerprint = record.get("reference_fingerprint")
    try:
        current = open_reference({"uri": str(reference.get("uri")),
                                  "base_dir": Path(reference.get("base_dir") or deps.base_dir)}, deps)
        if current.fingerprint == fingerprint:
            return current.frame(), []
        why = f"the reference at {reference.get('uri')} changed since the check (fingerprint {fingerprint})"
    except (NotFound, ValidationFailed, OSError) as exc:
        why = f"the reference the check used is gone: {exc}"
    log.warning("report of %s: %s", record.get("check_id"), why)
    return None, [f"{why}; evidently's panels are left out, the verdict below is the check's own record"]


def _name(record: Mapping[str, Any]) -> str:
    return report_name(record["monitor"], _window(record), "html")


def _window(record: Mapping[str, Any]) -> Window:
    return Window(parse_time(record["window"]["start"]), parse_time(record["window"]["end"]))


def _endpoint(record: Mapping[str, Any]) -> EndpointRef:
    endpoint = record.get("endpoint") or {}
    return EndpointRef(endpoint.get("name"), endpoint.get("deployment"))
