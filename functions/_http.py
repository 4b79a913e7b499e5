"""HTTP plumbing shared by the HTTP triggers: JSON bodies with limits, JSON errors naming the field."""
from __future__ import annotations

import base64
import json
import re
from typing import Any, Callable

import azure.functions as func

from core.errors import NotFound, PermanentError, RetryableError, ValidationFailed


class BodyTooLarge(ValidationFailed):
    reason = "BodyTooLarge"


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(payload, indent=None, sort_keys=True), status_code=status,
                             mimetype="application/json", headers=headers)


def error(status: int, message: str, field: str | None = None) -> func.HttpResponse:
    body: dict[str, Any] = {"error": public(message)}
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
    except RecursionError as exc:  # thousands of nested arrays: refuse, do not crash the worker
        raise ValidationFailed("body nests too deeply to be a request", field="body") from exc
    except ValueError as exc:  # not JSON, not UTF-8, or a number with more digits than Python converts
        raise ValidationFailed(f"body is not valid JSON: {str(exc)[:200]}", field="body") from exc
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


def caller(req: func.HttpRequest) -> str:
    """Who called, for the audit trail: the principal App Service authentication put in the request
    (`x-ms-client-principal`, base64 JSON of the validated token's claims, or `-name`), else the function key.

    The platform sets these headers after validating the token and drops any a client sends (devhost does the
    same), so a caller cannot name someone else by sending a header.
    """
    name = _principal_name(req.headers.get("x-ms-client-principal") or "")
    name = name or (req.headers.get("x-ms-client-principal-name") or "").strip()
    return name[:256] if name else "function-key"


def _principal_name(encoded: str) -> str | None:
    """The name claim of an App Service principal header; None when absent or malformed."""
    if not encoded:
        return None
    try:
        principal = json.loads(base64.b64decode(encoded, validate=True))
        claims = {c.get("typ"): c.get("val") for c in principal.get("claims", []) if isinstance(c, dict)}
        name = claims.get(principal.get("name_typ")) or claims.get("name") or claims.get("preferred_username")
    except (ValueError, TypeError, AttributeError):
        return None
    return name.strip() if isinstance(name, str) and name.strip() else None


# An absolute path (POSIX or Windows) inside a message: the caller sees its last component only.
_PATH = re.compile(r"(?:[A-Za-z]:\\|file://|/)(?:[^\s'\"():,;/\\]+[/\\])+([^\s'\"():,;/\\]*)")


def public(message: str) -> str:
    """An error message fit for a caller: no server folders, bounded length."""
    return _PATH.sub(lambda m: m.group(1) or "…", message)[:1000]


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
            return json_response({"error": public(f"temporarily unavailable: {exc}")}, 503, {"Retry-After": "30"})

    wrapper.__name__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    return wrapper
