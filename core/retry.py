"""The one way to retry, over `tenacity`: transient failures with capped exponential backoff, and
optimistic-concurrency loops (re-read and decide again). The same `backoff` formula spaces bus redeliveries.

    retry_transient(lambda: post(body), on=(TransientHttp,), attempts=4, base=0.5)
    retry_on_conflict(lambda: bump(store, key), what=f"watermark of {monitor}")
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Callable, TypeVar

import tenacity

from core.errors import ConcurrencyConflict, RetryableError, WorkHeld

log = logging.getLogger("mlops.retry")
T = TypeVar("T")


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...): base, 2*base, 4*base, ... at most cap."""
    if attempt < 1:
        return 0.0
    return min(cap, base * 2.0 ** min(attempt - 1, 62))


def redelivery_delay(delivery_count: int, *, base: timedelta = timedelta(seconds=5),
                     cap: timedelta = timedelta(minutes=5)) -> timedelta:
    """How long a failed bus message waits before its next delivery: 5 s, 10 s, 20 s ... at most 5 min."""
    return timedelta(seconds=backoff(delivery_count, base=base.total_seconds(), cap=cap.total_seconds()))


def retry_delay(exc: BaseException, delivery_count: int, now: datetime) -> timedelta:
    """When a failed message should come back: backoff by delivery count; work held elsewhere when the
    holder's lease ends (at most 15 minutes, so a lease that is never released cannot park it for long)."""
    delay = redelivery_delay(delivery_count)
    retry_at = getattr(exc, "retry_at", None)
    if isinstance(exc, WorkHeld) and retry_at is not None:
        delay = min(max(delay, retry_at - now), timedelta(minutes=15))
    return delay


def retry_transient(fn: Callable[[], T], *, on: tuple[type[BaseException], ...] = (RetryableError,),
                    attempts: int = 4, within: float | None = None, base: float = 0.5, cap: float = 30.0,
                    sleep: Callable[[float], None] = time.sleep, what: str = "") -> T:
    """Call `fn` until it returns, retrying exceptions of type `on` with backoff; after `attempts` tries
    (or `within` seconds) the last exception propagates unchanged."""
    stop = tenacity.stop_after_attempt(attempts)
    if within is not None:
        stop = tenacity.stop_after_delay(within)
    retrying = tenacity.Retrying(
        stop=stop, wait=lambda state: backoff(state.attempt_number, base=base, cap=cap),
        retry=tenacity.retry_if_exception_type(on), reraise=True, sleep=sleep,
        before_sleep=lambda state: log.info("%s: attempt %d failed (%s); retrying", what or getattr(
            fn, "__name__", "call"), state.attempt_number, state.outcome.exception() if state.outcome else ""))
    return retrying(fn)


def retry_on_conflict(fn: Callable[[], T], *, attempts: int = 20, what: str = "record") -> T:
    """Optimistic concurrency: `fn` re-reads, decides and writes with an etag; a lost race runs it again
    at once. After `attempts` lost races, ConcurrencyConflict (retryable: the message comes back later)."""
    retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(attempts),
                                 retry=tenacity.retry_if_exception_type(ConcurrencyConflict), reraise=True)
    try:
        return retrying(fn)
    except ConcurrencyConflict as exc:
        raise ConcurrencyConflict(f"{what} kept changing under us ({attempts} attempts): {exc}") from exc
