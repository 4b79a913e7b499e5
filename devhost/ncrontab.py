"""NCRONTAB schedules as the Azure Functions timer trigger reads them, in UTC.

Six fields, seconds first: `{second} {minute} {hour} {day} {month} {day-of-week}`. Each field takes
`*`, a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from a to the field's end), and lists of
those separated by commas. Months take JAN-DEC and days of week SUN-SAT (0 = Sunday, 6 = Saturday).
Like NCrontab (and unlike Vixie cron) a restricted day and day-of-week must BOTH match.

>>> s = CronSchedule.parse("0 */5 * * * *")
>>> s.next_after(datetime(2013, 4, 1, 0, 3, 7, tzinfo=UTC)).isoformat()
'2013-04-01T00:05:00+00:00'
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.types import utc

_MONTHS = {name: i for i, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
_DAYS = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("second", 0, 59, {}),
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day", 1, 31, {}),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 6, _DAYS),
)
# A day-of-month/day-of-week pair such as Feb 29 on a Monday recurs only every 28 years.
_HORIZON_YEARS = 60


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, expression: str) -> "CronSchedule":
        if not isinstance(expression, str):
            raise ValueError(f"NCRONTAB expression must be a string, got {type(expression).__name__}")
        parts = expression.split()
        if len(parts) != 6:
            raise ValueError(f"NCRONTAB {expression!r}: expected 6 fields "
                             f"'{{second}} {{minute}} {{hour}} {{day}} {{month}} {{day-of-week}}', got {len(parts)}")
        sets = [_parse_field(text, spec, expression) for text, spec in zip(parts, _FIELDS, strict=True)]
        schedule = cls(expression, *(frozenset(s) for s in sets))
        if not any(day <= _max_days(month) for month in schedule.months for day in schedule.days):
            raise ValueError(f"NCRONTAB {expression!r}: day(s) {sorted(schedule.days)} never occur "
                             f"in month(s) {sorted(schedule.months)}")
        return schedule

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (timezone-aware), in UTC."""
        t = utc(moment).replace(microsecond=0) + timedelta(seconds=1)
        limit = t.year + _HORIZON_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                t = _first_of_next_month(t)
            elif t.day not in self.days or (t.weekday() + 1) % 7 not in self.weekdays:
                t = _next_midnight(t)
            elif (t2 := self._fit_time(t)) is not None:
                return t2
            else:
                t = _next_midnight(t)
        raise ValueError(f"NCRONTAB {self.expression!r} has no occurrence within {_HORIZON_YEARS} years of {moment}")

    def _fit_time(self, t: datetime) -> datetime | None:
        """The first allowed time of day at or after t's time, on t's date (None: none left that day)."""
        for hour in sorted(h for h in self.hours if h >= t.hour):
            floor_min = t.minute if hour == t.hour else 0
            for minute in sorted(m for m in self.minutes if m >= floor_min):
                floor_sec = t.second if (hour, minute) == (t.hour, t.minute) else 0
                second = min((s for s in self.seconds if s >= floor_sec), default=None)
                if second is not None:
                    return t.replace(hour=hour, minute=minute, second=second)
        return None

    def occurrences(self, after: datetime, until: datetime) -> list[datetime]:
        """Every occurrence in (after, until]."""
        found, t = [], self.next_after(after)
        while t <= utc(until):
            found.append(t)
            t = self.next_after(t)
        return found


def next_after(expression: str, moment: datetime) -> datetime:
    return CronSchedule.parse(expression).next_after(moment)


def _parse_field(text: str, spec: _Field, expression: str) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        try:
            values |= _parse_item(item, spec)
        except ValueError as exc:
            raise ValueError(f"NCRONTAB {expression!r}: {spec.name} field {text!r}: {exc}") from None
    return values


def _parse_item(item: str, spec: _Field) -> set[int]:
    body, slash, step_text = item.partition("/")
    step = _number(step_text, "step") if slash else 1
    if slash and step < 1:
        raise ValueError(f"step must be at least 1, got {step}")
    if body == "*":
        low, high = spec.low, spec.high
    elif "-" in body:
        first, _, last = body.partition("-")
        low, high = _value(first, spec), _value(last, spec)
        if low > high:
            raise ValueError(f"range {body!r} runs backwards")
    else:
        low = _value(body, spec)
        high = spec.high if slash else low
    return set(range(low, high + 1, step))


def _value(text: str, spec: _Field) -> int:
    named = spec.names.get(text.upper())
    value = named if named is not None else _number(text, spec.name)
    if not spec.low <= value <= spec.high:
        raise ValueError(f"{value} is outside {spec.low}-{spec.high}")
    return value


def _number(text: str, what: str) -> int:
    if not text.isdigit():
        named = " or a name" if what in ("month", "day-of-week") else ""
        raise ValueError(f"{what} {text!r} is not a number{named}")
    return int(text)


def _max_days(month: int) -> int:
    return 29 if month == 2 else calendar.monthrange(2001, month)[1]


def _next_midnight(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0) + timedelta(days=1)


def _first_of_next_month(t: datetime) -> datetime:
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)
