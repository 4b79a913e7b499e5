"""Retraining: triggers from drift and HTTP, run tracking, gate and canary deployment."""
import azure.functions as func

from core.routing import TOPIC
from functions._bus import consume
from functions._http import caller, guarded, json_body, json_response, require_str

bp = func.Blueprint()


@bp.service_bus_topic_trigger(arg_name="msg", topic_name=TOPIC, subscription_name="retrain",
                              connection="ServiceBusConnection")
def start_retrain(msg: func.ServiceBusMessage) -> None:
    consume(msg, "retrain", lambda envelope, box: box.on_retrain_event(envelope))


@bp.service_bus_topic_trigger(arg_name="msg", topic_name=TOPIC, subscription_name="deploy",
                              connection="ServiceBusConnection")
def gate_and_deploy(msg: func.ServiceBusMessage) -> None:
    consume(msg, "deploy", lambda envelope, box: box.on_deploy_event(envelope))


@bp.timer_trigger(arg_name="timer", schedule="%TRACK_SCHEDULE%", run_on_startup=False, use_monitor=True)
def track_retrains(timer: func.TimerRequest) -> None:
    import bootstrap

    bootstrap.container().track_runs()


@bp.route(route="retrain", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def request_retrain(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/retrain {"endpoint", "reason", "window"?} + Idempotency-Key -> 202 with run id and status URL."""
    import bootstrap
    from functions._parse import optional_window

    body = json_body(req)
    endpoint = require_str(body, "endpoint")
    reason = require_str(body, "reason", max_len=1000)
    window = optional_window(body)
    key = (req.headers.get("Idempotency-Key") or "").strip()[:200] or None
    run = bootstrap.container().request_retrain(endpoint, reason, window=window, idempotency_key=key,
                                                caller=caller(req))
    url = f"/api/runs/{run['run_id']}"
    return json_response({**run, "status_url": url}, 202, {"Location": url})


@bp.route(route="runs/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    import bootstrap

    return json_response(bootstrap.container().get_run(req.route_params["id"]))
