"""Reference profiles, their on-disk cache, kind inference, and compare() on awkward windows."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from monitors.drift.engine import compare
from monitors.drift.profile import ProfileCache, ReferenceProfile, build_profile, infer_kinds

KINDS = {"amount": "numeric", "count": "numeric", "channel": "categorical", "flag": "categorical"}


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "amount": rng.lognormal(shift, 1, n), "count": rng.integers(0, 40, n),
        "channel": rng.choice(["web", "app", "store"], n), "flag": rng.random(n) < 0.3,
        "request_id": np.arange(n)})


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return frame(3000, seed=1)


def _stats(features):
    return [(f.name, f.method, f.statistic, f.effect, f.drifted) for f in features]


def test_saved_profile_gives_the_same_drift(reference, tmp_path):
    profile = build_profile(reference, KINDS, methods={"count": "psi"}, fingerprint="ref-v1")
    profile.save(tmp_path / "p.npz")
    loaded = ReferenceProfile.load(tmp_path / "p.npz")
    current = frame(800, seed=2, shift=0.3)
    assert loaded.fingerprint == "ref-v1" and loaded.rows == 3000
    assert _stats(compare(loaded, current)) == _stats(compare(profile, current))
    assert loaded.columns["channel"].categories == profile.columns["channel"].categories
    assert loaded.columns["flag"].categories == (False, True) or loaded.columns["flag"].categories == (True, False)


def test_content_fingerprint_when_none_given(reference):
    a = build_profile(reference, KINDS)
    b = build_profile(reference.copy(), KINDS)
    c = build_profile(frame(3000, seed=9), KINDS)
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_cache_builds_once_per_fingerprint_kinds_and_methods(reference, tmp_path):
    loads = []

    def load():
        loads.append(1)
        return reference

    first = ProfileCache(tmp_path).get_or_build("model:3", load, KINDS)
    again = ProfileCache(tmp_path).get_or_build("model:3", load, KINDS)  # a new process: reads the file
    assert len(loads) == 1
    assert _stats(compare(again, reference)) == _stats(compare(first, reference))
    ProfileCache(tmp_path).get_or_build("model:3", load, KINDS, methods={"amount": "ks"})
    ProfileCache(tmp_path).get_or_build("model:4", load, KINDS)
    assert len(loads) == 3
    with pytest.raises(ValueError, match="fingerprint"):
        ProfileCache(tmp_path).get_or_build("", load, KINDS)


@pytest.mark.parametrize(("kinds", "methods", "message"), [
    ({"missing": "numeric"}, None, "'missing' is not in the reference"),
    ({"channel": "numeric"}, None, "'channel' is declared numeric"),
    ({"amount": "text"}, None, "'amount': kind 'text'"),
    ({"amount": "numeric"}, {"amount": "ttest"}, "unknown drift method 'ttest'"),
    ({"channel": "categorical"}, {"channel": "ks"}, "'ks' does not apply to categorical"),
    ({"amount": "numeric"}, {"count": "psi"}, "'count': a method is given"),
])
def test_bad_configuration_names_the_column(reference, kinds, methods, message):
    with pytest.raises(ValueError, match=message):
        build_profile(reference, kinds, methods=methods)


def test_empty_reference_column_is_an_error(reference):
    with pytest.raises(ValueError, match="'amount' has no values"):
        build_profile(reference.assign(amount=np.nan), {"amount": "numeric"})


def test_missing_or_empty_current_columns_do_not_crash_a_check(reference):
    profile = build_profile(reference, KINDS)
    current = frame(500, seed=3).drop(columns=["channel"]).assign(amount=np.nan)
    by_name = {f.name: f for f in compare(profile, current)}
    assert by_name["channel"].note == "column missing from the current window"
    assert by_name["amount"].note == "no values in the current window" and by_name["amount"].current_rows == 0
    assert not by_name["amount"].drifted and by_name["count"].tested
    json.dumps([f.to_json() for f in by_name.values()], allow_nan=False)


def test_unseen_categories_and_category_dtype(reference):
    profile = build_profile(reference, KINDS)
    current = frame(1000, seed=4)
    current.loc[:299, "channel"] = "kiosk"
    plain = {f.name: f for f in compare(profile, current)}["channel"]
    coded = {f.name: f for f in compare(profile, current.astype({"channel": "category"}))}["channel"]
    assert plain.method == "jensenshannon" and plain.drifted and plain.statistic > 0.3
    assert coded.statistic == pytest.approx(plain.statistic, abs=1e-12)
    assert plain.current_rows == 1000


def test_compare_does_not_touch_the_callers_frame(reference):
    profile = build_profile(reference, KINDS)
    current = frame(400, seed=5)
    before = current.copy()
    compare(profile, current)
    pd.testing.assert_frame_equal(current, before)


def test_thresholds_override_the_method_default(reference):
    profile = build_profile(reference, KINDS)
    current = frame(800, seed=6, shift=0.4)
    default = {f.name: f for f in compare(profile, current)}["amount"]
    lenient = {f.name: f for f in compare(profile, current, thresholds={"amount": 5.0})}["amount"]
    assert default.drifted and default.threshold == 0.1
    assert not lenient.drifted and lenient.threshold == 5.0 and lenient.statistic == default.statistic


def test_wrongly_typed_numeric_values_are_ignored_not_fatal(reference):
    profile = build_profile(reference, KINDS)
    current = frame(300, seed=7).astype({"amount": object})
    current.loc[:9, "amount"] = "n/a"
    amount = {f.name: f for f in compare(profile, current)}["amount"]
    assert amount.tested and amount.current_rows == 290


def test_infer_kinds_like_evidently():
    rng = np.random.default_rng(0)
    n = 400
    data = pd.DataFrame({
        "price": rng.normal(size=n), "rooms": rng.integers(1, 6, n), "visits": rng.integers(0, 500, n),
        "city": rng.choice(["a", "b", "c"], n), "is_new": rng.random(n) < 0.5,
        "comment": [f"free text {i}" for i in range(n)], "customer_id": rng.integers(0, 10**6, n),
        "created_at": pd.date_range("2024-01-01", periods=n, freq="h"), "time": np.arange(n) * 1.0,
        "empty": np.full(n, np.nan)})
    assert infer_kinds(data) == {"price": "numeric", "rooms": "categorical", "visits": "numeric",
                                 "city": "categorical", "is_new": "categorical"}


def test_unreadable_cached_profile_is_rebuilt(reference, tmp_path):
    cache = ProfileCache(tmp_path)
    cache.get_or_build("model:5", lambda: reference, KINDS)
    cache.path("model:5", KINDS).write_bytes(b"not a profile")
    rebuilt = cache.get_or_build("model:5", lambda: reference, KINDS)
    assert rebuilt.rows == 3000
    assert ReferenceProfile.load(cache.path("model:5", KINDS)).rows == 3000


def test_z_test_on_unorderable_categories_is_reported_not_raised():
    reference = pd.DataFrame({"mixed": ["a"] * 30 + [1] * 20})
    profile = build_profile(reference, {"mixed": "categorical"}, methods={"mixed": "z"})
    [feature] = compare(profile, pd.DataFrame({"mixed": ["a"] * 10 + [1] * 15}))
    assert not feature.tested and "not supported" in feature.note and not feature.drifted
