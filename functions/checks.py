"""Checks: the Service Bus consumers that run one check and re-baseline monitors on a promotion, and the
HTTP routes to request and read a check."""
import azure.functions as func

from core.routing import TOPIC
from functions._bus import consume
from functions._http import guarded, json_body, json_response, require_str

bp = func.Blueprint()


@bp.service_bus_topic_trigger(arg_name="msg", topic_name=TOPIC, subscription_name="run-check",
                              connection="ServiceBusConnection")
def run_check(msg: func.ServiceBusMessage) -> None:
    consume(msg, "run-check", lambda envelope, box: box.run_check(envelope))


@bp.service_bus_topic_trigger(arg_name="msg", topic_name=TOPIC, subscription_name="rebaseline",
                              connection="ServiceBusConnection")
def rebaseline_monitors(msg: func.ServiceBusMessage) -> None:
    consume(msg, "rebaseline", lambda envelope, box: box.rebaseline(envelope))


@bp.route(route="checks", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def request_check(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/checks[?force=true] {"monitor", "window": {"start", "end"}?, "force": bool?} -> 202 with the
    check id; 200 with "status": "already_checked" when that window was checked (force=true checks it again).
    A window given up after failed attempts is re-run."""
    import bootstrap
    from functions._parse import flag, optional_window

    body = json_body(req)
    monitor = require_str(body, "monitor")
    window = optional_window(body)
    force = flag(body, req.params, "force")
    accepted = bootstrap.container().request_check(monitor, window, force=force)
    url = f"/api/checks/{accepted['check_id']}"
    if accepted["status"] == "already_checked":
        return json_response({**accepted, "status_url": url}, 200)
    return json_response({**accepted, "status_url": url}, 202, {"Location": url})


@bp.route(route="checks/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def get_check(req: func.HttpRequest) -> func.HttpResponse:
    import bootstrap

    return json_response(bootstrap.container().get_check(req.route_params["id"]))


@bp.route(route="checks/{id}/report", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def get_check_report(req: func.HttpRequest) -> func.HttpResponse:
    """The check's HTML report (its verdict, then evidently's panels); 202 while it is being built."""
    import bootstrap

    found = bootstrap.container().check_report(req.route_params["id"])
    if isinstance(found, bytes):
        return func.HttpResponse(found, status_code=200, mimetype="text/html")
    return json_response(found, 202, {"Location": found["report_url"], "Retry-After": "10"})


@bp.service_bus_topic_trigger(arg_name="msg", topic_name=TOPIC, subscription_name="reports",
                              connection="ServiceBusConnection")
def build_check_report(msg: func.ServiceBusMessage) -> None:
    consume(msg, "reports", lambda envelope, box: box.build_report(str(envelope.data["check_id"])))
