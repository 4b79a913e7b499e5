"""Validation of the small pieces HTTP bodies share."""
from __future__ import annotations

from typing import Any

from core.errors import ValidationFailed
from core.types import Window, parse_time


def optional_window(body: dict[str, Any]) -> Window | None:
    raw = body.get("window")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValidationFailed("'window' must be an object with 'start' and 'end'", field="window")
    bounds = []
    for name in ("start", "end"):
        text = raw.get(name)
        if not isinstance(text, str):
            raise ValidationFailed(f"'window.{name}' is required (ISO 8601 with a timezone)", field=f"window.{name}")
        try:
            bounds.append(parse_time(text))
        except ValueError as exc:
            raise ValidationFailed(f"'window.{name}' is not an ISO 8601 time with a timezone: {text!r}",
                                   field=f"window.{name}") from exc
    try:
        return Window(bounds[0], bounds[1])
    except ValueError as exc:
        raise ValidationFailed(str(exc), field="window") from exc
