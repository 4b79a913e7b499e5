"""The one way to do each small thing: strict JSON, atomic writes and rebuilt caches, retries, durations, clocks."""
from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from core.clock import ManualClock, ScaledClock, SystemClock, parse_clock
from core.errors import ConcurrencyConflict, ConfigurationError, RetryableError
from core.files import cached, write_atomic, write_json
from core.plain import finite, plain
from core.retry import backoff, redelivery_delay, retry_on_conflict, retry_transient
from core.types import format_duration, parse_duration, parse_time


def test_plain_is_strict_json_for_what_statistics_hand_back():
    value = {"a": np.float64(1.5), "b": float("nan"), "c": (1, np.int64(2)), "d": np.array([1.0, np.inf]),
             "e": datetime(2013, 4, 1, tzinfo=UTC), "f": np.bool_(True), 3: {"g": -math.inf}}
    out = plain(value)
    assert out == {"a": 1.5, "b": None, "c": [1, 2], "d": [1.0, None], "e": "2013-04-01T00:00:00Z", "f": True,
                   "3": {"g": None}}
    json.dumps(out, allow_nan=False)
    assert plain([math.nan, math.inf, -math.inf], nonfinite="text") == ["NaN", "Infinity", "-Infinity"]
    with pytest.raises(TypeError, match="object is not JSON"):
        plain({"x": object()})
    assert plain({"x": object}, default=lambda v: "odd") == {"x": "odd"}
    assert finite(np.float32(2.0)) == 2.0 and finite(math.nan) is None and finite(None) is None


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = write_json(tmp_path / "a" / "doc.json", {"v": 1})
    with pytest.raises(RuntimeError):
        write_atomic(path, lambda out: (out.write(b"{half"), (_ for _ in ()).throw(RuntimeError("killed"))))
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in path.parent.iterdir()] == ["doc.json"]  # no temp file left behind


@pytest.mark.parametrize("damage", [b"", b"\x93NUMPY garbage", b"PK\x03\x04 not a zip"])
def test_a_damaged_cache_file_is_rebuilt(tmp_path, damage):
    path = tmp_path / "c.npy"
    builds = []

    def build():
        builds.append(1)
        return np.arange(5.0)

    def save(values, out):
        np.save(out, values)

    def load(p):
        return np.load(p, allow_pickle=False)

    assert cached(path, load, build, save).tolist() == [0, 1, 2, 3, 4]
    assert cached(path, load, build, save).tolist() == [0, 1, 2, 3, 4] and len(builds) == 1
    path.write_bytes(damage)
    assert cached(path, load, build, save).tolist() == [0, 1, 2, 3, 4] and len(builds) == 2
    assert np.load(path).tolist() == [0, 1, 2, 3, 4]  # and the rebuilt file replaced the damaged one


def test_damaged_calibration_nulls_are_rebuilt_not_fatal(tmp_path):
    from monitors.drift.engine import compare
    from monitors.drift.profile import build_profile
    from monitors.drift.verdict import Calibrator

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(0, 1, 3000), "c": rng.choice(list("abc"), 3000)})
    profile = build_profile(frame.iloc[:2000], {"x": "numeric", "c": "categorical"}, fingerprint="f")
    features = compare(profile, frame.iloc[2000:2900])
    first = Calibrator(profile, cache_dir=tmp_path).verdict(features, 900)
    [path] = tmp_path.glob("null-*.npz")  # one file per window size holds every column's null
    good = path.read_bytes()
    path.write_bytes(good[:100])  # truncated by a crash
    assert Calibrator(profile, cache_dir=tmp_path).verdict(features, 900).details == first.details
    assert path.read_bytes() == good  # rebuilt, the same
    np.savez(path, c0=np.full(7, np.nan), c1=np.arange(7.0))  # readable, but not nulls of the right size
    assert Calibrator(profile, cache_dir=tmp_path).verdict(features, 900).details == first.details
    with np.load(path) as nulls:
        assert all(np.isfinite(nulls[k]).all() and nulls[k].size > 7 for k in nulls.files)


def test_retry_transient_backs_off_exponentially_and_gives_up_with_the_real_error():
    sleeps, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RetryableError(f"down {len(calls)}")
        return "ok"

    assert retry_transient(flaky, attempts=4, base=0.5, sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0]
    with pytest.raises(RetryableError, match="down 3"):
        calls.clear()
        retry_transient(lambda: flaky() if len(calls) < 2 else (_ for _ in ()).throw(RetryableError("down 3")),
                        attempts=3, base=0, sleep=lambda s: None)
    assert [backoff(n, base=5, cap=60) for n in (1, 2, 3, 4, 5, 100)] == [5, 10, 20, 40, 60, 60]
    assert redelivery_delay(1) == timedelta(seconds=5) and redelivery_delay(50) == timedelta(minutes=5)


def test_retry_on_conflict_reruns_the_decision_and_then_gives_up():
    tries = []

    def lose_twice():
        tries.append(1)
        if len(tries) <= 2:
            raise ConcurrencyConflict("etag moved")
        return len(tries)

    assert retry_on_conflict(lose_twice) == 3
    with pytest.raises(ConcurrencyConflict, match="kept changing"):
        retry_on_conflict(lambda: (_ for _ in ()).throw(ConcurrencyConflict("x")), attempts=3, what="thing")


def test_one_duration_rule():
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_duration("2w") == timedelta(days=14)
    assert parse_duration(60) == timedelta(minutes=1)
    assert format_duration(parse_duration("7d")) == "1w"
    for bad in ("1 fortnight", "-5m", "9" * 30 + "d", math.nan, True, None, ""):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)


def test_times_out_of_the_calendar_are_value_errors():
    for text in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00", "2013-04-01T00:00:00", "nope"):
        with pytest.raises(ValueError):
            parse_time(text)


def test_one_clock_syntax():
    assert isinstance(parse_clock("real"), SystemClock)
    sim = parse_clock("sim:2013-04-01T00:00:00Z@60")
    assert isinstance(sim, ScaledClock) and sim.now() >= datetime(2013, 4, 1, tzinfo=UTC)
    assert parse_clock("manual:2013-04-01T00:00:00Z").now() == datetime(2013, 4, 1, tzinfo=UTC)
    assert isinstance(parse_clock("manual:2013-04-01T00:00:00Z"), ManualClock)
    for bad in ("sim:", "sim:2013-04-01@x", "sim:2013-04-01T00:00:00Z@-1", "wall", "manual:2013-04-01T00:00:00Z@2"):
        with pytest.raises(ConfigurationError, match="clock"):
            parse_clock(bad)
