from datetime import timedelta
from pathlib import Path

import pytest

from core.errors import NotFound, ValidationFailed
from core.types import Severity
from monitors.spec import SpecRepository, load_spec, parse_duration

GOOD = """\
name: flights-delay
endpoint:
  name: flights
  deployment: blue
model:
  name: delay-model
features:
  - name: distance
    kind: numeric
  - name: carrier
    kind: categorical
    method: psi
    threshold: 0.2
prediction:
  column: score
  kind: score
label:
  column: delayed
  task: classification
  lag: 2d
reference:
  uri: ref.parquet
window:
  size: 1h
  lateness: 5m
schedule: "0 */5 * * * *"
signals:
  data_drift:
    policy: evidently
    share: 0.3
  health:
    max_p95_latency_ms: 250
alert:
  consecutive: 2
  cooldown: 6h
  severity:
    data_drift: critical
retrain:
  on_drift: true
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_full_spec_loads_with_durations_and_defaults(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.name == "flights-delay" and spec.endpoint.deployment == "blue"
    assert spec.kinds == {"distance": "numeric", "carrier": "categorical"}
    assert spec.label.lag == timedelta(days=2)
    assert spec.window.size == timedelta(hours=1) and spec.window.lateness == timedelta(minutes=5)
    assert spec.alert.cooldown == timedelta(hours=6)
    assert spec.alert.severity_of("data_drift") is Severity.CRITICAL
    assert spec.signals.data_drift.policy == "evidently"
    assert spec.signals.performance.max_drop is None  # default kept: 0.03 AUC (performance.allowed_drop)
    assert spec.base_dir == tmp_path.resolve()


@pytest.mark.parametrize("old, new, field", [
    ("    kind: categorical\n", "    kind: image\n", "features.1.kind"),
    ("  size: 1h\n", "  size: soon\n", "window.size"),
    ("  consecutive: 2\n", "  consecutive: 0\n", "alert.consecutive"),
    ("    max_p95_latency_ms: 250\n", "    max_p95_latency: 250\n", "signals.health.max_p95_latency"),
    ('schedule: "0 */5 * * * *"\n', 'schedule: "*/5 * * * *"\n', "schedule"),
])
def test_errors_name_the_file_the_field_and_the_line(tmp_path, old, new, field):
    assert old in GOOD
    text = GOOD.replace(old, new)
    line = text.splitlines().index(new.rstrip("\n")) + 1
    path = write(tmp_path, text)
    with pytest.raises(ValidationFailed) as err:
        load_spec(path)
    message = str(err.value)
    assert str(path) in message and field in message and f"line {line}:" in message
    assert err.value.field == field


def test_a_missing_required_section_points_at_its_parent(tmp_path):
    path = write(tmp_path, GOOD.replace("model:\n  name: delay-model\n", ""))
    with pytest.raises(ValidationFailed, match=r"line 1: model: Field required"):
        load_spec(path)


def test_yaml_syntax_errors_carry_the_line(tmp_path):
    path = write(tmp_path, GOOD.replace("  deployment: blue\n", "  deployment: [blue\n"))
    with pytest.raises(ValidationFailed, match=r"line \d+"):
        load_spec(path)


def test_duplicate_features_are_refused(tmp_path):
    text = GOOD.replace("  - name: carrier\n", "  - name: distance\n")
    with pytest.raises(ValidationFailed, match="repeated: distance"):
        load_spec(write(tmp_path, text))


def test_durations():
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_duration(60) == timedelta(minutes=1)
    with pytest.raises(ValueError):
        parse_duration("1 fortnight")


def test_repository_finds_specs_by_monitor_name_and_rereads_changes(tmp_path):
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD.replace("name: flights-delay", "name: other"), "b.yml")
    repo = SpecRepository(tmp_path)
    assert repo.names() == ["flights-delay", "other"]
    assert repo.get("other").name == "other"
    with pytest.raises(NotFound, match="nope"):
        repo.get("nope")
    write(tmp_path, GOOD.replace("name: flights-delay", "name: renamed"), "a.yaml")
    import os
    os.utime(tmp_path / "a.yaml", (1, 1))  # a different mtime, whatever the clock resolution
    assert repo.names() == ["other", "renamed"]


def test_a_broken_or_duplicate_spec_does_not_stop_the_others(tmp_path):
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD, "b.yaml")  # the same monitor name again
    write(tmp_path, GOOD.replace("name: flights-delay", "name: broken").replace("size: 1h", "size: x"), "c.yaml")
    repo = SpecRepository(tmp_path)
    assert repo.names() == ["flights-delay"]
    assert set(repo.errors) == {tmp_path / "b.yaml", tmp_path / "c.yaml"}
    assert "already used" in repo.errors[tmp_path / "b.yaml"]
    with pytest.raises(NotFound, match=r"broken specs: .*c\.yaml: .*line \d+: window\.size"):
        repo.get("broken")


def test_the_example_specs_load():
    repo = SpecRepository(Path(__file__).resolve().parents[2] / "monitors" / "examples")
    assert "flights-delay" in repo.names()
    spec = repo.get("flights-delay")
    assert spec.retrain.on_drift and spec.label.lag == timedelta(days=1)
