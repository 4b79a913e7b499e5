"""core.records (inbox, watermarks) and monitors.windows (window leases) on every StateStore adapter."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from core import records
from core.errors import NotFound, WorkHeld
from core.types import Window
from monitors import windows

T0 = datetime(2013, 4, 1, tzinfo=timezone.utc)
WINDOW = Window(T0, T0 + timedelta(hours=1))


def _together(workers: int, work) -> list:
    """Run work(i) on `workers` threads released at once; return their results in order."""
    barrier = threading.Barrier(workers)
    results: list = [None] * workers
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def test_mark_processed_reports_duplicates(state_store):
    assert not records.already_processed(state_store, "run_check", "msg-1")
    assert records.mark_processed(state_store, "run_check", "msg-1", T0) is True
    assert records.mark_processed(state_store, "run_check", "msg-1", T0 + timedelta(seconds=5)) is False
    assert records.already_processed(state_store, "run_check", "msg-1")
    # Another consumer of the same message has its own inbox entry.
    assert records.mark_processed(state_store, "notify", "msg-1", T0) is True


def test_concurrent_deliveries_are_processed_once(state_store):
    results = _together(6, lambda i: records.mark_processed(state_store, "run_check", "msg-9", T0))
    assert sorted(results) == [False] * 5 + [True]


def test_watermark_never_goes_backwards(state_store):
    assert records.get_watermark(state_store, "flights") is None
    assert records.advance_watermark(state_store, "flights", T0 + timedelta(hours=2)) == T0 + timedelta(hours=2)
    assert records.advance_watermark(state_store, "flights", T0 + timedelta(hours=1)) == T0 + timedelta(hours=2)
    assert records.get_watermark(state_store, "flights") == T0 + timedelta(hours=2)
    assert records.advance_watermark(state_store, "flights", T0 + timedelta(hours=3)) == T0 + timedelta(hours=3)
    assert records.get_watermark(state_store, "flights") == T0 + timedelta(hours=3)


def test_concurrent_advancers_leave_the_latest_watermark(state_store):
    targets = [T0 + timedelta(hours=h) for h in (5, 1, 8, 3, 7, 2)]
    results = _together(len(targets), lambda i: records.advance_watermark(state_store, "flights", targets[i]))
    assert records.get_watermark(state_store, "flights") == max(targets)
    # Each advancer saw a watermark at least as late as the one it asked for.
    assert all(seen >= asked for seen, asked in zip(results, targets, strict=True))


def _claim(store, message: str, at=T0, lease=timedelta(minutes=10)):
    """True: this delivery holds the window; False: held by another message (WorkHeld); None: nothing to do."""
    try:
        return windows.claim(store, ("flights", WINDOW), message, at, lease) is not None or None
    except WorkHeld:
        return False


def _done(store, message: str) -> None:
    rec = windows.load(store, "flights", WINDOW)
    windows.relay(store, _Nowhere(), windows.stage(store, rec, "check-1", []))


class _Nowhere:
    def publish(self, envelope, *, scheduled_at=None):
        raise AssertionError("no events were staged")


def test_two_messages_racing_for_a_window_exactly_one_claims(state_store):
    results = _together(2, lambda i: _claim(state_store, f"message-{i}"))
    assert sorted(results) == [False, True]


def test_many_messages_racing_for_a_window_exactly_one_claims(state_store):
    results = _together(8, lambda i: _claim(state_store, f"message-{i}"))
    assert results.count(True) == 1


def test_a_done_window_cannot_be_claimed_again(state_store):
    assert _claim(state_store, "a")
    _done(state_store, "a")
    assert windows.passed(state_store, "flights", WINDOW)
    later = T0 + timedelta(days=1)  # long after any lease
    assert _claim(state_store, "b", later) is None and _claim(state_store, "a", later) is None
    assert windows.load(state_store, "flights", WINDOW).state == windows.DONE


def test_a_live_lease_blocks_other_messages_and_an_expired_one_is_taken_over(state_store):
    assert _claim(state_store, "a")
    assert _claim(state_store, "b", T0 + timedelta(minutes=9)) is False
    assert _claim(state_store, "b", T0 + timedelta(minutes=11))
    assert _claim(state_store, "c", T0 + timedelta(minutes=12)) is False  # b's lease is the live one now
    _done(state_store, "b")
    assert windows.passed(state_store, "flights", WINDOW)


def test_a_redelivery_of_the_same_message_takes_its_lease_over_at_once(state_store):
    assert _claim(state_store, "a")
    assert _claim(state_store, "a", T0 + timedelta(minutes=1))  # the first delivery died; no lease wait


def test_put_overwrites_and_require_reads_back(state_store):
    records.put(state_store, records.RUN, "run-1", {"status": "queued"})
    records.put(state_store, records.RUN, "run-1", {"status": "running"})
    assert records.require(state_store, records.RUN, "run-1").data == {"status": "running"}
    with pytest.raises(NotFound):
        records.require(state_store, records.RUN, "run-2")
