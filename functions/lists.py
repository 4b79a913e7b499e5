"""Lists for operators: monitors, checks, incidents, runs, deployments; paginated (`limit`, `cursor`), filtered.

Every answer is {"items": [...], "count": n, "next": cursor | null}; pass `cursor=<next>` for the next page.
"""
from __future__ import annotations

from datetime import datetime

import azure.functions as func

from core.errors import ValidationFailed
from functions._http import guarded, json_response

bp = func.Blueprint()
CHECK_STATUSES = ("ok", "breached", "empty", "running")
RUN_STATES = ("requested", "running", "trained", "accepted", "rejected", "canary", "promoted", "rolled_back",
              "skipped", "failed")


def _page(req: func.HttpRequest):
    from core.paging import page_request

    return page_request(req.params.get("limit"), req.params.get("cursor"))


def _choice(req: func.HttpRequest, name: str, allowed: tuple[str, ...]) -> str | None:
    value = (req.params.get(name) or "").strip() or None
    if value is not None and value not in allowed:
        raise ValidationFailed(f"{name} must be one of {', '.join(allowed)}; got {value!r}", field=name)
    return value


def _text(req: func.HttpRequest, name: str) -> str | None:
    value = (req.params.get(name) or "").strip()
    if len(value) > 256:
        raise ValidationFailed(f"{name} is longer than 256 characters", field=name)
    return value or None


def _time(req: func.HttpRequest, name: str) -> datetime | None:
    from core.types import parse_time

    text = (req.params.get(name) or "").strip()
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        raise ValidationFailed(f"{name} must be an ISO 8601 time with a timezone, got {text!r}", field=name) from None


@bp.route(route="monitors", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def list_monitors(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/monitors: each monitor's spec summary, watermark, last check and open incidents."""
    import bootstrap

    return json_response(bootstrap.container().list_monitors(_page(req)))


@bp.route(route="monitors/{name}/timeline", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def monitor_timeline(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/monitors/{name}/timeline?from=&to=: per window verdicts, effects, performance; incidents."""
    import bootstrap

    return json_response(bootstrap.container().monitor_timeline(
        req.route_params["name"], start=_time(req, "from"), end=_time(req, "to")))


@bp.route(route="checks", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def list_checks(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/checks?monitor=&from=&to=&status=: checks, newest window first (windows starting in [from, to))."""
    import bootstrap

    return json_response(bootstrap.container().list_checks(
        _page(req), monitor=_text(req, "monitor"), start=_time(req, "from"), end=_time(req, "to"),
        status=_choice(req, "status", CHECK_STATUSES)))


@bp.route(route="incidents", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def list_incidents(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/incidents?state=open|resolved&monitor=: incidents, most recently opened first."""
    import bootstrap

    return json_response(bootstrap.container().list_incidents(
        _page(req), state=_choice(req, "state", ("open", "resolved")), monitor=_text(req, "monitor")))


@bp.route(route="runs", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/runs?endpoint=&state=: retrain runs with their gate reasons, newest first."""
    import bootstrap

    return json_response(bootstrap.container().list_runs(
        _page(req), endpoint=_text(req, "endpoint"), state=_choice(req, "state", RUN_STATES)))


@bp.route(route="deployments", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def list_deployments(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/deployments: traffic per deployment of every endpoint the service watches or retrains."""
    import bootstrap

    return json_response(bootstrap.container().list_deployments())
