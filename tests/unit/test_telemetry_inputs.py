"""The fast (Arrow NDJSON) and exact (per-row msgspec) input decoders must give the same answer."""
from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa

from monitors.telemetry.inputs import _arrow_chunk, _exact_rows, decode_inputs, decode_untyped

FEATURES = {"distance": "numeric", "dep_delay": "numeric", "origin": "categorical"}


def plain(rng: random.Random) -> str:
    return json.dumps({"distance": round(rng.uniform(0, 3000), 3), "dep_delay": rng.choice([None, 1, -4.5]),
                       "origin": rng.choice(["JFK", "LGA", None]), "extra": [1, 2]}, separators=(",", ":"))


ODD = [
    '{"distance": 1, "dep_delay": 2, "origin": "JFK"}',  # spaces: not "plain", still valid
    '{\n"distance":1,"dep_delay":2,"origin":"JFK"}',  # a newline inside
    '{"distance":"far","dep_delay":2,"origin":"JFK"}',
    '{"distance":NaN,"dep_delay":2,"origin":"JFK"}',
    '{"distance":1e999,"dep_delay":2,"origin":"JFK"}',
    '{"dep_delay":2,"origin":"\\"distance\\":"}',  # the key text appears, inside a value
    '{"distance":1,"dep_delay":2,"origin":7}',  # a numeric category
    '{"distance":1,"dep_delay":true,"origin":"JFK"}',
    '{"distance":1,"dep_delay":2,"origin":{"a":1}}',
    '{"distance":1,"dep_delay":2}',
    '{"distance":1,"dep_delay":2,"origin":"JFK"},{"distance":1}',
    '{"distance":1,"dep_delay":2,"origin":"J',
    "[1,2]",
    "",
    None,
]


def decode(values, fast: bool):
    rejected: dict[int, str] = {}

    def reject(i, reason, detail, value):
        rejected[i] = reason

    if fast:
        return decode_inputs(values, FEATURES, reject), rejected
    n = len(values)
    columns = {name: np.full(n, np.nan) if kind == "numeric" else np.full(n, None, dtype=object)
               for name, kind in FEATURES.items()}
    _exact_rows(list(values), np.arange(n), FEATURES, columns, reject)
    return columns, rejected


def test_fast_and_exact_paths_agree_on_a_mix_of_good_and_bad_rows():
    rng = random.Random(7)
    values = [plain(rng) for _ in range(3000)]
    for odd in ODD:
        values.insert(rng.randrange(len(values)), odd)
    (fast, fast_rejected), (exact, exact_rejected) = decode(values, True), decode(values, False)
    assert fast_rejected == exact_rejected
    assert sorted(set(fast_rejected.values())) == ["missing_feature", "missing_field", "non_finite",
                                                   "unparsable_json", "wrong_type"]
    keep = np.array([i not in fast_rejected for i in range(len(values))])
    for name in FEATURES:
        a, b = fast[name][keep], exact[name][keep]
        if FEATURES[name] == "numeric":
            np.testing.assert_array_equal(a, b)  # NaN == NaN here
        else:
            assert list(a) == list(b)
    assert "7" in set(fast["origin"][keep])  # a numeric category became text on both paths


def test_plain_rows_are_taken_by_the_arrow_reader_in_one_pass():
    rng = random.Random(1)
    text = pa.array([json.dumps({"distance": rng.random(), "dep_delay": 2, "origin": "JFK"}) for _ in range(500)])
    columns = {"distance": np.full(500, np.nan), "dep_delay": np.full(500, np.nan),
               "origin": np.full(500, None, dtype=object)}
    taken = _arrow_chunk(text, np.arange(500), FEATURES, columns)
    assert taken.all() and not np.isnan(columns["distance"]).any()
    with_nulls = pa.array(['{"distance":1,"dep_delay":null,"origin":"JFK"}', '{"distance":1,"origin":"JFK"}'])
    taken = _arrow_chunk(with_nulls, np.arange(2), FEATURES, columns)
    assert not taken.any()  # null or absent: only the exact path can tell, so it decides


def test_without_a_spec_arrow_infers_columns_or_hands_back_to_the_row_path():
    rows = [json.dumps({"distance": float(i), "origin": "JFK"}) for i in range(100)]
    columns = decode_untyped(rows)
    assert columns["distance"].tolist() == [float(i) for i in range(100)] and set(columns["origin"]) == {"JFK"}
    assert decode_untyped(rows + ['{"distance":"far"}']) is None  # types disagree
    assert decode_untyped(rows + ["not json"]) is None
