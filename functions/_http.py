"""HTTP plumbing shared by the HTTP triggers: JSON bodies with limits, JSON errors naming the field."""
from __future__ import annotations

import json
from typing import Any, Callable

import azure.functions as func

from core.errors import NotFound, PermanentError, RetryableError, ValidationFailed


class BodyTooLarge(ValidationFailed):
    reason = "BodyTooLarge"


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(payload, indent=None, sort_keys=True), status_code=status,
                             mimetype="application/json", headers=headers)


def error(status: int, message: str, field: str | None = None) -> func.HttpResponse:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return json_response(body, status)


def json_body(req: func.HttpRequest, limit: int | None = None) -> dict[str, Any]:
    if limit is None:
        import bootstrap

        limit = bootstrap.container().settings.max_body_bytes  # MLOPS_MAX_BODY_BYTES
    raw = req.get_body() or b""
    if len(raw) > limit:
        raise BodyTooLarge(f"body is {len(raw)} bytes; the limit is {limit}")
    if not raw.strip():
        raise ValidationFailed("body must be a JSON object", field="body")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationFailed(f"body is not valid JSON: {exc}", field="body") from exc
    if not isinstance(doc, dict):
        raise ValidationFailed("body must be a JSON object", field="body")
    return doc


def require_str(doc: dict[str, Any], name: str, *, max_len: int = 256) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"'{name}' is required and must be a non-empty string", field=name)
    if len(value) > max_len:
        raise ValidationFailed(f"'{name}' is longer than {max_len} characters", field=name)
    return value.strip()


Handler = Callable[[func.HttpRequest], func.HttpResponse]


def guarded(handler: Handler) -> Handler:
    """Map the error tree to status codes; never leak a traceback to the caller."""

    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req)
        except BodyTooLarge as exc:
            return error(413, str(exc), "body")
        except ValidationFailed as exc:
            return error(400, str(exc), exc.field)
        except NotFound as exc:
            return error(404, str(exc))
        except PermanentError as exc:
            return error(422, str(exc))
        except RetryableError as exc:
            return json_response({"error": f"temporarily unavailable: {exc}"}, 503, {"Retry-After": "30"})

    wrapper.__name__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    return wrapper
