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
policy: {cooldown: 14d, max_per_day: 2, min_new_labelled_rows: 5000, max_model_age: 60d, rejection_backoff: 3}
gate: {min_improvement: 0.01, min_slice_rows: 300}
canary: {percent: 20, bake: 12h, max_error_rate: 0.05, min_requests: 100}
endpoints:
  flights: {rule: "sliding:90", lookback: 45d, slices: [origin], train: "python train.py --epochs 3", code: team}
""")
    config, overrides = load_config(path, RetrainConfig())
    assert config.retrain.cooldown == timedelta(days=14) and config.retrain.min_new_labelled_rows == 5000
    assert config.retrain.max_model_age == timedelta(days=60) and RetrainConfig().retrain.max_model_age is None
    assert config.retrain.rejection_backoff == 3 and RetrainConfig().retrain.rejection_backoff == 2
    assert config.gate.min_improvement == 0.01 and config.gate.max_slice_regression == 0.02
    assert (config.canary_percent, config.bake, config.min_canary_requests) == (20, timedelta(hours=12), 100)
    target = apply_overrides(TARGETS, overrides)["flights"]
    assert (target.rule, target.lookback, target.slices) == ("sliding:90", timedelta(days=45), ("origin",))
    # the team's command runs in its code folder, relative to the config file
    assert target.train == "python train.py --epochs 3" and target.code == str(tmp_path / "team")
    assert load_config(None, RetrainConfig()) == (RetrainConfig(), {})


@pytest.mark.parametrize(("text", "field"), [
    ("policy: {cooldwn: 1d}", "policy.cooldwn"),
    ("canary: {bake: soon}", "canary.bake"),
    ("policy: {max_model_age: old}", "policy.max_model_age"),
    ("policy: {rejection_backoff: 0.5}", "policy.rejection_backoff"),
    ("policy: {rejection_backoff: twice}", "policy.rejection_backoff"),
    ("gate: {primary_metric: recall}", "gate"),
    ("endpoints: {trains: {rule: recent_only}}", "endpoints.trains"),
    ("extras: 1", "extras"),
    ("endpoints: {flights: {train: 'python t.py', train_component: 'azureml:t:1'}}",
     "endpoints.flights.train_component"),
    ("endpoints: {flights: {train: ''}}", "endpoints.flights.train"),
])
def test_bad_config_names_the_field(tmp_path, text, field):
    path = tmp_path / "retrain.yaml"
    path.write_text(text)
    with pytest.raises(ValidationFailed) as exc:
        config, overrides = load_config(path, RetrainConfig())
        apply_overrides(TARGETS, overrides)
    assert exc.value.field == field


def test_a_gate_metric_that_does_not_fit_an_endpoints_task_is_refused_naming_the_endpoint():
    from retrain.config import check_gate
    from retrain.gate import GatePolicy

    regression = {"delay": RetrainTarget(endpoint="delay", model_name="m", features={"a": "numeric"}, label="y",
                                         reference="r.parquet", task="regression")}
    with pytest.raises(ValidationFailed, match="endpoint delay") as exc:
        check_gate(RetrainConfig(gate=GatePolicy(primary_metric="auc")), regression)
    assert exc.value.field == "gate.primary_metric"
    check_gate(RetrainConfig(), regression)  # the task's own metric by default
