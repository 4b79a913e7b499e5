"""Envelope encoding, the registry, deterministic ids, and a golden sample per event type."""
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import MalformedEvent, PermanentError, UnknownEventType
from core.events import REGISTRY, decode, encode, event_id, new_event

GOLDEN = Path(__file__).parents[1] / "golden"
T = datetime(2013, 4, 2, tzinfo=timezone.utc)


def test_every_registered_type_has_a_golden_sample():
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(REGISTRY)


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_golden_sample_round_trips_byte_for_byte(path):
    doc = json.loads(path.read_text())
    envelope = decode(path.read_bytes())
    assert envelope.type == path.stem == doc["type"]
    assert json.loads(encode(envelope)) == doc
    assert decode(encode(envelope)) == envelope


def test_type_names_follow_the_convention():
    for name in REGISTRY:
        prefix, area, event, version = name.split(".", 3) if name.count(".") == 3 else (None,) * 4
        assert prefix == "mlops" and area and event and version.startswith("v"), name


def test_event_id_is_deterministic_and_distinguishes_causes():
    a = event_id("check", "m", "20130401T000000Z-20130402T000000Z")
    assert a == event_id("check", "m", "20130401T000000Z-20130402T000000Z")
    assert a != event_id("check", "m", "20130402T000000Z-20130403T000000Z")
    assert event_id("ab", "c") != event_id("a", "bc")  # parts are separated, not concatenated


def test_numpy_scalars_and_nan_become_plain_json():
    data = {"monitor": "m", "window_start": "a", "window_end": "b", "rows": np.int64(3),
            "share": np.float32(0.5), "missing": float("nan"), "arr": np.array([1, 2])}
    envelope = new_event("mlops.check.requested.v1", data, time=T)
    assert envelope.data["rows"] == 3 and type(envelope.data["rows"]) is int
    assert envelope.data["missing"] is None and envelope.data["arr"] == [1, 2]
    assert decode(encode(envelope)) == envelope


def test_caused_event_carries_correlation_and_causation():
    first = new_event("mlops.check.requested.v1", {"monitor": "m", "window_start": "a", "window_end": "b"},
                      id="e1", time=T)
    nxt = first.caused("mlops.check.completed.v1", {"monitor": "m", "check_id": "c", "window_start": "a",
                                                    "window_end": "b", "status": "completed"}, id="e2", time=T)
    assert (nxt.correlationid, nxt.causationid, nxt.subject) == ("e1", "e1", first.subject)


@pytest.mark.parametrize("body, reason", [
    (b"not json", "MalformedEvent"),
    (b"[1, 2]", "MalformedEvent"),
    (b'{"id": "x"}', "MalformedEvent"),
    (b'{"specversion": "1.0", "id": "x", "type": "mlops.nope.v1", "source": "s", "time": "2013-01-01T00:00:00Z",'
     b' "data": {}}', "UnknownEventType"),
    (b'{"specversion": "1.0", "id": "x", "type": "mlops.check.requested.v1", "source": "s",'
     b' "time": "2013-01-01T00:00:00Z", "data": {"monitor": "m"}}', "MalformedEvent"),
    (b'{"specversion": "0.3", "id": "x", "type": "mlops.check.requested.v1", "source": "s",'
     b' "time": "2013-01-01T00:00:00Z", "data": {}}', "MalformedEvent"),
    (b'{"specversion": "1.0", "id": "x", "type": "mlops.check.requested.v1", "source": "s",'
     b' "time": "yesterday", "data": {"monitor": "m", "window_start": "a", "window_end": "b"}}', "MalformedEvent"),
    (b"\xff\xfe", "MalformedEvent"),
])
def test_bad_bodies_raise_a_permanent_error_with_a_reason(body, reason):
    with pytest.raises(PermanentError) as info:
        decode(body)
    assert info.value.reason == reason
    assert str(info.value)


def test_new_event_rejects_unknown_types_and_missing_fields():
    with pytest.raises(UnknownEventType):
        new_event("mlops.made.up.v1", {}, time=T)
    with pytest.raises(MalformedEvent, match="window_start"):
        new_event("mlops.check.requested.v1", {"monitor": "m", "window_end": "b"}, time=T)


@given(st.dictionaries(st.text(min_size=1, max_size=8),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20)
                                    | st.floats(allow_nan=False, allow_infinity=False),
                                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                                        st.text(max_size=5), inner, max_size=3), max_leaves=10), max_size=5))
def test_any_json_data_round_trips(extra):
    data = {**extra, "monitor": "m", "window_start": "a", "window_end": "b"}
    envelope = new_event("mlops.check.requested.v1", data, time=T)
    assert decode(encode(envelope)) == envelope
