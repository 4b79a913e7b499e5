"""Window summaries against the exact engine: every statistic within its stated bound, parts merge exactly."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from monitors.drift.engine import compare
from monitors.drift.profile import build_profile
from monitors.drift.summary import SummarySpec, add_frame, drift, merge

SHAPES = {
    "normal": lambda rng, n, s: rng.normal(s, 1, n),
    "lognormal": lambda rng, n, s: rng.lognormal(s, 1, n),
    "student3": lambda rng, n, s: rng.standard_t(3, n) + s,
    "gamma": lambda rng, n, s: rng.gamma(0.7, 20, n) * (1 + s),
    "rounded": lambda rng, n, s: np.round(rng.normal(s, 1, n), 1),  # few distinct values: exact counts
}


def frames(shape: str, shift: float, n: int = 60_000, m: int = 40_000):
    rng = np.random.default_rng(hash(shape) % 2**32)
    ref = pd.DataFrame({"x": SHAPES[shape](rng, n, 0.0), "c": rng.choice(list("abcdef"), n)})
    cur = pd.DataFrame({"x": SHAPES[shape](rng, m, shift), "c": rng.choice(list("abcdefg"), m, p=[.2] * 4 + [.1] * 2
                                                                                     + [0.0])})
    cur.loc[cur.index % 97 == 0, "x"] = np.nan
    return ref, cur


def summarised(spec, cur, parts=3):
    chunks = np.array_split(np.arange(len(cur)), parts)
    results = [add_frame(spec, spec.empty(), cur.iloc[c]) for c in chunks]
    total = results[0]
    for part in results[1:]:
        total = merge(total, part)
    return total


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("method", ["wasserstein", "ks", "jensenshannon"])
@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_every_statistic_is_within_its_stated_bound_of_the_exact_engine(shape, method, shift):
    ref, cur = frames(shape, shift)
    profile = build_profile(ref, {"x": "numeric", "c": "categorical"}, methods={"x": method})
    spec = SummarySpec.of(profile)
    features, bounds = drift(profile, spec, summarised(spec, cur))
    exact = {f.name: f for f in compare(profile, cur)}
    got = {f.name: f for f in features}
    x, want = got["x"], exact["x"]
    assert x.current_rows == want.current_rows and x.method == want.method == method
    if method == "ks":  # the bound is on D; the p-value follows D through a monotone map
        from monitors.drift.stattests import ks_statistic

        d_exact = ks_statistic(profile.columns["x"].values, np.sort(cur.x.dropna().to_numpy()))
        from monitors.drift.summary import WindowModel

        summary = summarised(spec, cur)
        if summary.columns["x"].values is None:
            d, bound = WindowModel(profile.columns["x"], spec.grids["x"], summary.columns["x"]).ks()
            assert abs(d - d_exact) <= bound + 1e-12 and bound <= 5e-3
    else:
        assert abs(x.statistic - want.statistic) <= bounds["x"] + 1e-12, (x.statistic, want.statistic, bounds["x"])
    assert abs(x.effect - want.effect) <= (bounds["x"] if method == "wasserstein" else math.inf) + 1e-12
    if shape == "rounded":  # every distinct value counted: exact
        assert bounds["x"] == 0.0 and x.statistic == pytest.approx(want.statistic, abs=1e-12)
    elif method == "wasserstein":
        assert bounds["x"] <= 0.01  # the grid is fine enough to matter
    c = got["c"]  # categories are counted: exact, unseen ones included
    assert bounds["c"] == 0.0 and c.statistic == pytest.approx(exact["c"].statistic, abs=1e-15)


def test_parts_merge_to_the_whole_in_any_grouping():
    ref, cur = frames("lognormal", 0.1, m=9000)
    spec = SummarySpec.of(build_profile(ref, {"x": "numeric", "c": "categorical"}))
    whole = add_frame(spec, spec.empty(), cur)
    a, b, c = (add_frame(spec, spec.empty(), cur.iloc[i::3]) for i in range(3))
    for merged in (merge(merge(a, b), c), merge(a, merge(c, b))):
        assert merged.rows == whole.rows
        assert (merged.columns["x"].counts == whole.columns["x"].counts).all()
        assert merged.columns["x"].low == whole.columns["x"].low and merged.columns["x"].missing == 93
        assert merged.columns["c"].counts == whole.columns["c"].counts


def test_spec_round_trips_through_plain_json():
    import json

    ref, _ = frames("gamma", 0.0, n=5000)
    spec = SummarySpec.of(build_profile(ref, {"x": "numeric", "c": "categorical"}))
    again = SummarySpec.from_json(json.loads(json.dumps(spec.to_json())))
    values = ref.x.to_numpy()
    assert (again.grids["x"].index(values) == spec.grids["x"].index(values)).all()
    assert again.categorical == ("c",)
