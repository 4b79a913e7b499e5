"""Azure SDK errors translated at the edge: every Azure adapter raises the product's RetryableError or
PermanentError (core/errors.py), never a raw azure-core or azure-ai-ml exception, so a handler or the tracking
timer can tell "try again later" from "this will never work" without knowing the SDK.

    @translated("Azure ML")                  # on an adapter method: errors name the service, method and target
    def promote(self, endpoint, candidate): ...

    raise azure_error(exc, "reading job x", service="Azure ML")   # where a call needs its own handling
"""
from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from core.errors import ConcurrencyConflict, MlopsError, NotFound, PermanentError, RetryableError

F = TypeVar("F", bound=Callable[..., Any])


def is_azure_error(exc: BaseException) -> bool:
    """An exception raised by azure-core (every Azure SDK) or by azure-ai-ml's own checks."""
    module = type(exc).__module__ or ""
    if module.startswith("azure.core") or module.startswith("azure.ai.ml"):
        return True
    from azure.core.exceptions import AzureError

    return isinstance(exc, AzureError)


def azure_error(exc: BaseException, what: str, *, service: str = "Azure", hint_403: str = "") -> MlopsError:
    """The product's error for an SDK exception: outages, throttling and timeouts are retryable; missing
    resources NotFound; races ConcurrencyConflict; refusals and invalid requests permanent."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    status = getattr(exc, "status_code", None)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)) or status in (408, 429) or (status or 0) >= 500:
        return RetryableError(f"{what}: {service} unavailable ({status or type(exc).__name__}): {exc}")
    if status in (409, 412):
        return ConcurrencyConflict(f"{what}: changed or exists already ({status}): {exc}")
    if status == 404:
        return NotFound(f"{what}: not found in {service} (404)")
    if isinstance(exc, ClientAuthenticationError) and status is None:
        return RetryableError(f"{what}: could not get a token (the identity may be starting): {exc}")
    if status in (401, 403):
        return PermanentError(f"{what}: {service} refused the identity ({status}){hint_403}: {exc}",
                              reason="Forbidden")
    if isinstance(exc, HttpResponseError) and status is not None:
        return PermanentError(f"{what}: rejected by {service} ({status}): {exc}", reason="Rejected")
    if type(exc).__module__.startswith("azure.ai.ml"):  # the SDK's own validation: the request is wrong
        return PermanentError(f"{what}: {service} SDK refused the request: {exc}", reason="Invalid")
    return RetryableError(f"{what}: {type(exc).__name__}: {exc}")


def translated(service: str) -> Callable[[F], F]:
    """Decorate an adapter method so SDK errors leave it as the product's errors, naming what was attempted."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except MlopsError:
                raise
            except Exception as exc:
                if not is_azure_error(exc):
                    raise
                target = next((a for a in args[1:2] if hasattr(a, "name")), None)
                what = f"{method.__name__}" + (f" {target.name}" if target is not None else "")
                raise azure_error(exc, what, service=service) from exc

        return wrapper  # type: ignore[return-value]

    return decorate
