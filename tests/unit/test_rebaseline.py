"""A promotion re-baselines the endpoint's monitors: checks compare traffic with the promoted model's reference."""
from datetime import timedelta

import numpy as np
import pytest

from core.clock import ManualClock
from core.errors import ValidationFailed
from core.events import event_id, new_event
from core.state_sqlite import SqliteStateStore
from monitors.check import CheckDeps, run_check
from monitors.drift.profile import ProfileCache
from monitors.rebaseline import REFERENCE, on_model_promoted
from monitors.spec import SpecRepository
from tests.unit.test_check_handler import (
    DAY,
    SPEC,
    T0,
    FakeTelemetry,
    MemoryReports,
    RecordingPublisher,
    requested,
    traffic,
)

SHIFT = 300.0  # distance drift: large against the spec's reference, none against the promoted model's


@pytest.fixture
def deps(tmp_path):
    (tmp_path / "specs").mkdir()
    traffic(np.random.default_rng(0), 1500).to_parquet(tmp_path / "specs" / "ref.parquet")
    (tmp_path / "specs" / "flights.yaml").write_text(SPEC)
    (tmp_path / "specs" / "other.yaml").write_text(SPEC.replace("name: flights-delay", "name: other-delay")
                                                   .replace("endpoint: {name: flights,", "endpoint: {name: other,"))
    (tmp_path / "runs").mkdir()  # where a retrain pipeline wrote the new model's reference (an absolute path)
    traffic(np.random.default_rng(3), 1500, shift=SHIFT).to_parquet(tmp_path / "runs" / "reference.parquet")
    store = SqliteStateStore(tmp_path / "state.sqlite")
    yield CheckDeps(store=store, publisher=RecordingPublisher(), telemetry=FakeTelemetry(),
                    specs=SpecRepository(tmp_path / "specs"), profiles=ProfileCache(tmp_path / "profiles"),
                    reports=MemoryReports(), clock=ManualClock(T0 + 10 * DAY), base_dir=tmp_path / "specs")
    store.close()


def promoted(deps, endpoint="flights", version="4", reference="runs/reference.parquet", at=T0 + 5 * DAY):
    uri = str(deps.base_dir.parent / reference) if reference else None
    return new_event("mlops.model.promoted.v1", {
        "run_id": f"run-{version}", "endpoint": endpoint, "candidate": {"name": "delay-model", "version": version},
        "traffic": {"green": 100}, "model_version": f"delay-model:{version}", "reference_uri": uri},
        id=event_id("mlops.model.promoted.v1", endpoint, version), time=at)


def test_a_promotion_stores_the_override_once_for_the_endpoints_monitors_only(deps):
    event = promoted(deps)
    assert on_model_promoted(event, deps) == ["flights-delay"]
    doc = deps.store.get(REFERENCE, "flights-delay")
    assert doc.data == {"uri": str(deps.base_dir.parent / "runs" / "reference.parquet"),
                        "model_version": "delay-model:4", "since": event.time, "event_id": event.id}
    assert on_model_promoted(event, deps) == []  # redelivered: nothing changes
    assert deps.store.get(REFERENCE, "flights-delay").etag == doc.etag
    assert deps.store.get(REFERENCE, "other-delay") is None


def test_other_endpoints_events_without_a_reference_and_late_older_promotions_change_nothing(deps):
    assert on_model_promoted(promoted(deps, endpoint="elsewhere"), deps) == []
    assert on_model_promoted(promoted(deps, version="5", reference=None), deps) == []
    assert deps.store.get(REFERENCE, "flights-delay") is None
    on_model_promoted(promoted(deps, version="7", at=T0 + 8 * DAY), deps)
    assert on_model_promoted(promoted(deps, version="6", at=T0 + 7 * DAY), deps) == []  # arrived late
    assert deps.store.get(REFERENCE, "flights-delay").data["model_version"] == "delay-model:7"
    with pytest.raises(ValidationFailed, match="model.promoted"):
        on_model_promoted(requested(1), deps)


def test_after_a_promotion_checks_compare_with_the_new_models_reference(deps):
    for day in (4, 5, 6, 7):
        deps.telemetry.frames[T0 + day * DAY] = traffic(np.random.default_rng(day), 800, shift=SHIFT)
    before = run_check(requested(4), deps)
    assert "data_drift" in before["breached_signals"]
    used = {k: before["reference"][k] for k in ("uri", "model_version")}
    assert used == {"uri": "ref.parquet", "model_version": None}

    on_model_promoted(promoted(deps), deps)
    fits = deps.evaluators.fits
    after = [run_check(requested(day), deps) for day in (5, 6, 7)]
    for record in after:
        assert "data_drift" not in record["breached_signals"], record["summary"]
        assert {k: record["reference"][k] for k in ("uri", "model_version")} == {
            "uri": str(deps.base_dir.parent / "runs" / "reference.parquet"), "model_version": "delay-model:4"}
        assert record["reference_fingerprint"] != before["reference_fingerprint"]
    assert deps.evaluators.fits == fits + 1  # refitted once for the new model version, not per check


def test_a_reference_that_disappeared_fails_the_check_naming_the_field(deps):
    on_model_promoted(promoted(deps, reference="runs/gone.parquet"), deps)
    deps.clock.advance(timedelta(hours=1))
    with pytest.raises(ValidationFailed, match="does not exist") as caught:
        run_check(requested(5), deps)
    assert caught.value.field == "reference.uri"
