"""The operators' dashboard: GET /api/dashboard?code=<function key> and its assets (served by the app)."""
import azure.functions as func

from functions._http import guarded

bp = func.Blueprint()


@bp.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    """A read-only page over the list APIs: monitors, incidents, timelines, runs, deployments."""
    from dashboard import SECURITY_HEADERS, page

    return func.HttpResponse(page(req.params.get("code")), status_code=200, mimetype="text/html", charset="utf-8",
                             headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


@bp.route(route="dashboard/assets/{name}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def dashboard_asset(req: func.HttpRequest) -> func.HttpResponse:
    """dashboard.js, dashboard.css and plotly.min.js (from the installed plotly package), gzipped if accepted."""
    from dashboard import SECURITY_HEADERS, asset

    gzip_ok = "gzip" in (req.headers.get("Accept-Encoding") or "").lower()
    found = asset(req.route_params["name"], gzip_ok=gzip_ok)
    headers = {**SECURITY_HEADERS, "Cache-Control": "private, max-age=3600", "Vary": "Accept-Encoding"}
    if found.gzipped:
        headers["Content-Encoding"] = "gzip"
    return func.HttpResponse(found.body, status_code=200, mimetype=found.content_type, charset="utf-8",
                             headers=headers)
