"""core.records (inbox, watermarks, window claims) on every StateStore adapter."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from core import records
from core.errors import NotFound
from core.types import Window

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


def test_two_owners_racing_for_a_window_exactly_one_claims(state_store):
    results = _together(2, lambda i: records.claim_window(state_store, "flights", WINDOW, f"owner-{i}", T0))
    assert sorted(results) == [False, True]


def test_many_owners_racing_for_a_window_exactly_one_claims(state_store):
    results = _together(8, lambda i: records.claim_window(state_store, "flights", WINDOW, f"owner-{i}", T0))
    assert results.count(True) == 1


def test_a_done_window_cannot_be_claimed_again(state_store):
    assert records.claim_window(state_store, "flights", WINDOW, "a", T0)
    records.finish_claim(state_store, "flights", WINDOW, "a", "check-1")
    assert records.window_done(state_store, "flights", WINDOW)
    later = T0 + timedelta(days=1)  # long after any lease
    assert not records.claim_window(state_store, "flights", WINDOW, "b", later)
    assert not records.claim_window(state_store, "flights", WINDOW, "a", later)
    assert records.window_done(state_store, "flights", WINDOW)


def test_a_live_lease_blocks_others_and_an_expired_one_is_taken_over(state_store):
    lease = timedelta(minutes=10)
    assert records.claim_window(state_store, "flights", WINDOW, "a", T0, lease)
    assert not records.claim_window(state_store, "flights", WINDOW, "b", T0 + timedelta(minutes=9), lease)
    assert records.claim_window(state_store, "flights", WINDOW, "b", T0 + timedelta(minutes=11), lease)
    # The new owner's lease is now the live one.
    assert not records.claim_window(state_store, "flights", WINDOW, "a", T0 + timedelta(minutes=12), lease)
    records.finish_claim(state_store, "flights", WINDOW, "b", "check-2")
    assert records.window_done(state_store, "flights", WINDOW)


def test_the_same_owner_can_renew_its_claim(state_store):
    assert records.claim_window(state_store, "flights", WINDOW, "a", T0)
    assert records.claim_window(state_store, "flights", WINDOW, "a", T0 + timedelta(minutes=1))


def test_finishing_an_unclaimed_window_is_not_found(state_store):
    with pytest.raises(NotFound):
        records.finish_claim(state_store, "flights", WINDOW, "a", "check-3")


def test_put_overwrites_and_require_reads_back(state_store):
    records.put(state_store, records.RUN, "run-1", {"status": "queued"})
    records.put(state_store, records.RUN, "run-1", {"status": "running"})
    assert records.require(state_store, records.RUN, "run-1").data == {"status": "running"}
    with pytest.raises(NotFound):
        records.require(state_store, records.RUN, "run-2")
