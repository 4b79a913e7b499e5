"""Validation of the small pieces HTTP bodies share. Every failure is a ValidationFailed naming the field."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Mapping

from core.errors import ValidationFailed
from core.types import Window, format_duration, parse_time

# Times a monitored endpoint can have served: outside them a window is a typo, and date arithmetic
# (lateness, label lag) near the calendar's ends would overflow inside a handler.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class WindowTooLong(ValidationFailed):
    reason = "WindowTooLong"


def optional_window(body: Mapping[str, Any], *, max_span: timedelta | None = None) -> Window | None:
    raw = body.get("window")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValidationFailed("'window' must be an object with 'start' and 'end'", field="window")
    bounds = [_time(raw.get(name), f"window.{name}") for name in ("start", "end")]
    try:
        window = Window(bounds[0], bounds[1])
    except ValueError as exc:
        raise ValidationFailed(str(exc), field="window") from exc
    if max_span is None:
        import bootstrap

        max_span = bootstrap.container().settings.max_window_span
    if window.length > max_span:
        raise WindowTooLong(f"window spans {window.length}; the limit is {format_duration(max_span)} "
                            "(MLOPS_MAX_WINDOW_SPAN)", field="window")
    return window


def flag(body: Mapping[str, Any], query: Mapping[str, str], name: str) -> bool:
    """A boolean from the body (true/false) or the query string (?name=true|false|1|0)."""
    value: Any = body.get(name, query.get(name))
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    raise ValidationFailed(f"'{name}' must be true or false, got {str(value)[:40]!r}", field=name)


def _time(text: Any, field: str) -> datetime:
    if not isinstance(text, str):
        raise ValidationFailed(f"'{field}' is required (ISO 8601 with a timezone)", field=field)
    try:
        moment = parse_time(text)
    except ValueError as exc:
        raise ValidationFailed(f"'{field}' is not an ISO 8601 time with a timezone: {text[:64]!r}",
                               field=field) from exc
    if not EARLIEST <= moment <= LATEST:
        raise ValidationFailed(f"'{field}' must lie between {EARLIEST.year} and {LATEST.year}, got {text[:64]!r}",
                               field=field)
    return moment
