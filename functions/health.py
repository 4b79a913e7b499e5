"""Liveness for load balancers and people: anonymous, cheap, touches no adapter."""
import azure.functions as func

from functions._http import json_response

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"status": "ok"})
