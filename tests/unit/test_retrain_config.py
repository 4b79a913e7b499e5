from datetime import timedelta

import pytest

from core.errors import ValidationFailed
from retrain.config import apply_overrides, load_config
from retrain.deps import RetrainConfig, RetrainTarget

TARGETS = {"flights": RetrainTarget(endpoint="flights", model_name="m", features={"a": "numeric"}, label="y",
                                    reference="ref.parquet")}


def test_a_config_file_sets_policy_gate_canary_and_per_endpoint_training(tmp_path):
    path = tmp_path / "retrain.yaml"
    path.write_text("""
policy: {cooldown: 14d, max_per_day: 2, min_new_labelled_rows: 5000}
gate: {min_improvement: 0.01, min_slice_rows: 300}
canary: {percent: 20, bake: 12h, max_error_rate: 0.05, min_requests: 100}
endpoints:
  flights: {rule: "sliding:90", lookback: 45d, slices: [origin]}
""")
    config, overrides = load_config(path, RetrainConfig())
    assert config.retrain.cooldown == timedelta(days=14) and config.retrain.min_new_labelled_rows == 5000
    assert config.gate.min_improvement == 0.01 and config.gate.max_slice_regression == 0.02
    assert (config.canary_percent, config.bake, config.min_canary_requests) == (20, timedelta(hours=12), 100)
    target = apply_overrides(TARGETS, overrides)["flights"]
    assert (target.rule, target.lookback, target.slices) == ("sliding:90", timedelta(days=45), ("origin",))
    assert load_config(None, RetrainConfig()) == (RetrainConfig(), {})


@pytest.mark.parametrize(("text", "field"), [
    ("policy: {cooldwn: 1d}", "policy.cooldwn"),
    ("canary: {bake: soon}", "canary.bake"),
    ("gate: {primary_metric: recall}", "gate"),
    ("endpoints: {trains: {rule: recent_only}}", "endpoints.trains"),
    ("extras: 1", "extras"),
])
def test_bad_config_names_the_field(tmp_path, text, field):
    path = tmp_path / "retrain.yaml"
    path.write_text(text)
    with pytest.raises(ValidationFailed) as exc:
        config, overrides = load_config(path, RetrainConfig())
        apply_overrides(TARGETS, overrides)
    assert exc.value.field == field
