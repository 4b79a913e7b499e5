"""The Azure ML fine-tuning job of a catalog model, built from the retrain configuration and validated offline."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from core.errors import ConfigurationError
from retrain.finetune import FineTuneConfig, finetuning_job, write_jsonl

CATALOG = "azureml://registries/azureml/models/Phi-4-mini-instruct/versions/1"


def frame(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"post number {i}" if i % 13 else "" for i in range(n)],
                         "author": ["android" if i % 3 else "iphone" for i in range(n)],
                         "time": pd.date_range("2016-01-01", periods=n, freq="h", tz="UTC")[::-1]})


def test_the_job_is_what_azure_ml_receives(tmp_path):
    config = FineTuneConfig.from_mapping({"model": CATALOG, "task": "text_classification",
                                          "hyperparameters": {"num_train_epochs": 3, "learning_rate": 2e-5},
                                          "instance_types": ["Standard_NC24ads_A100_v4"]})
    job = finetuning_job(config, training="azureml:tweets-ft-training:3", validation="azureml:tweets-ft-valid:3",
                         output_model="tweets-author-ft", name="retrain-7-finetune", experiment="mlops-retrain",
                         tags={"mlops.run_id": "retrain-7"})
    rest = job._to_rest_object().as_dict()
    details = rest["properties"]["fine_tuning_details"] if "fine_tuning_details" in rest["properties"] else \
        rest["properties"]["fineTuningDetails"]
    body = json.dumps(rest)
    assert rest["name"] == "retrain-7-finetune" and "FineTuning" in body
    assert CATALOG in body and "azureml:tweets-ft-training:3" in body and "azureml:tweets-ft-valid:3" in body
    assert json.dumps(details).count("uri_file") == 2 and "mlflow_model" in json.dumps(details)
    assert '"num_train_epochs": "3"' in body and '"learning_rate": "2e-05"' in body  # the service takes strings
    assert "tweets-author-ft" in body and "Standard_NC24ads_A100_v4" in body and "retrain-7" in body


def test_training_rows_become_jsonl_with_the_latest_rows_for_validation(tmp_path):
    for task in ("text_classification", "chat_completion"):
        config = FineTuneConfig.from_mapping({"model": CATALOG, "task": task, "validation_share": 0.25})
        train, valid = write_jsonl(frame(), config, text_column="text", target="author", time_column="time",
                                   out=tmp_path / task)
        rows = [json.loads(x) for x in train.read_text().splitlines()]
        held = [json.loads(x) for x in valid.read_text().splitlines()]
        assert len(rows) + len(held) == 36 and len(held) == 9  # 4 empty texts left out; the last quarter validates
        if task == "text_classification":
            assert held[-1] == {"text": "post number 1", "label": "android"}  # time order: row 1 is among the latest
        else:
            assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
            assert held[-1]["messages"][2]["content"] == "android"


@pytest.mark.parametrize("doc, message", [
    ({"model": "Phi-4"}, "model-catalog or workspace model URI"),
    ({"model": CATALOG, "task": "summarize"}, "task: one of"),
    ({"model": CATALOG, "validation_share": 0.9}, "validation_share"),
    ({"model": CATALOG, "compute": "gpu", "instance_types": ["x"]}, "not both"),
    ({"model": CATALOG, "epochs": 3}, "unknown keys"),
])
def test_bad_configuration_is_refused_with_a_reason(doc, message):
    with pytest.raises(ConfigurationError, match=message):
        FineTuneConfig.from_mapping(doc)


def test_too_few_labelled_texts_is_a_clear_error(tmp_path):
    config = FineTuneConfig.from_mapping({"model": CATALOG})
    with pytest.raises(ConfigurationError, match="at least 10"):
        write_jsonl(frame(8), config, text_column="text", target="author", time_column="time", out=tmp_path)
