from datetime import UTC, datetime, timedelta, timezone

import pytest

from devhost.ncrontab import CronSchedule, next_after


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_every_five_minutes_on_the_minute():
    s = CronSchedule.parse("0 */5 * * * *")
    assert s.next_after(at(2013, 4, 1, 0, 0, 0)) == at(2013, 4, 1, 0, 5, 0)
    assert s.next_after(at(2013, 4, 1, 0, 3, 7)) == at(2013, 4, 1, 0, 5, 0)
    assert len(s.occurrences(at(2013, 4, 1), at(2013, 4, 1, 1))) == 12


def test_next_after_is_strictly_after_and_ignores_microseconds():
    s = CronSchedule.parse("* * * * * *")
    assert s.next_after(at(2013, 4, 1, 0, 0, 0)) == at(2013, 4, 1, 0, 0, 1)
    assert s.next_after(at(2013, 4, 1, 0, 0, 0).replace(microsecond=999_999)) == at(2013, 4, 1, 0, 0, 1)


def test_seconds_field_comes_first():
    assert next_after("30 * * * * *", at(2013, 4, 1, 10, 0, 31)) == at(2013, 4, 1, 10, 1, 30)


def test_lists_ranges_and_stepped_ranges():
    s = CronSchedule.parse("0 0 9-17/4,20 * * *")
    assert sorted(s.hours) == [9, 13, 17, 20]
    assert s.next_after(at(2013, 4, 1, 17, 0, 0)) == at(2013, 4, 1, 20, 0, 0)
    assert s.next_after(at(2013, 4, 1, 20, 0, 0)) == at(2013, 4, 2, 9, 0, 0)
    assert sorted(CronSchedule.parse("0 1-10/2 * * * *").minutes) == [1, 3, 5, 7, 9]
    assert sorted(CronSchedule.parse("0 50/5 * * * *").minutes) == [50, 55]


def test_day_of_week_by_number_and_name():
    weekdays = CronSchedule.parse("0 30 9 * * MON-FRI")
    # 2013-04-05 is a Friday: the next weekday morning is Monday the 8th.
    assert weekdays.next_after(at(2013, 4, 5, 9, 30, 0)) == at(2013, 4, 8, 9, 30, 0)
    assert CronSchedule.parse("0 0 0 * * 0").next_after(at(2013, 4, 1)) == at(2013, 4, 7)  # Sunday
    assert CronSchedule.parse("0 0 0 * * sat").next_after(at(2013, 4, 1)) == at(2013, 4, 6)


def test_day_and_day_of_week_must_both_match():
    # Friday the 13th: the next after 2013-01-01 is September 13, 2013.
    assert next_after("0 0 0 13 * FRI", at(2013, 1, 1)) == at(2013, 9, 13)


def test_crosses_month_and_year_ends():
    assert next_after("0 0 0 1 * *", at(2013, 1, 31, 23, 59, 59)) == at(2013, 2, 1)
    assert next_after("0 0 0 * * *", at(2013, 12, 31, 12)) == at(2014, 1, 1)
    assert next_after("0 0 12 31 * *", at(2013, 4, 30)) == at(2013, 5, 31, 12)  # skips 30-day April
    assert next_after("0 0 0 29 FEB *", at(2013, 1, 1)) == at(2016, 2, 29)
    assert next_after("59 59 23 31 DEC *", at(2013, 12, 31, 23, 59, 59)) == at(2014, 12, 31, 23, 59, 59)


def test_converts_other_timezones_to_utc():
    plus_two = timezone(timedelta(hours=2))
    assert next_after("0 0 * * * *", datetime(2013, 4, 1, 2, 30, tzinfo=plus_two)) == at(2013, 4, 1, 1)


@pytest.mark.parametrize("expression, words", [
    ("0 */5 * * *", "expected 6 fields"),
    ("0 */5 * * * * *", "expected 6 fields"),
    ("60 * * * * *", "second field '60': 60 is outside 0-59"),
    ("0 * 24 * * *", "hour field"),
    ("0 * * 0 * *", "day field"),
    ("0 * * * 13 *", "month field"),
    ("0 * * * * 7", "day-of-week field"),
    ("0 */0 * * * *", "step must be at least 1"),
    ("0 10-5 * * * *", "runs backwards"),
    ("0 x * * * *", "minute 'x' is not a number"),
    ("0 0 0 * FOO *", "is not a number or a name"),
    ("0 0 0 31 2 *", "never occur"),
    ("0 0 0 30,31 FEB *", "never occur"),
])
def test_invalid_expressions_raise_a_clear_value_error(expression, words):
    with pytest.raises(ValueError) as exc:
        CronSchedule.parse(expression)
    assert words in str(exc.value)
    assert expression in str(exc.value)


def test_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="naive"):
        CronSchedule.parse("* * * * * *").next_after(datetime(2013, 4, 1))
