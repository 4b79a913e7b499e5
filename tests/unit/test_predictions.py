"""Reading what a deployment answered into telemetry's (prediction, score), for the three task kinds."""
from __future__ import annotations

import json
import urllib.request
from datetime import datetime, timezone

import pytest

from core.clock import ManualClock
from retrain.datacollector import LocalDataCollector, config_json
from retrain.predictions import model_card, read_predictions


def test_binary_probabilities_give_the_positive_class_score_and_the_class():
    assert read_predictions([[0.9, 0.1], [0.3, 0.7]], 2) == [(0, 0.1), (1, 0.7)]
    assert read_predictions([[0.9, 0.1], [0.3, 0.7]], 2, ["on time", "late"]) == [("on time", 0.1), ("late", 0.7)]


def test_multiclass_probabilities_give_the_most_probable_class():
    answer = [[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]
    assert read_predictions(answer, 2, ["a", "b", "c"]) == [("b", 0.5), ("a", 0.6)]


def test_the_task_says_what_a_number_is():
    assert read_predictions([12.5, -3.0], 2, task="regression") == [(12.5, 12.5), (-3.0, -3.0)]
    assert read_predictions([[12.5]], 1, task="regression") == [(12.5, 12.5)]
    assert read_predictions([0.7, 0.2, 1], 3, task="binary") == [(1, 0.7), (0, 0.2), (1, None)]  # 1: a label


def test_labels_and_values_are_predictions_without_a_score():
    assert read_predictions([12.5, -3.0], 2) == [(12.5, None), (-3.0, None)]
    assert read_predictions(["cat", "dog"], 2) == [("cat", None), ("dog", None)]
    assert read_predictions([{"prediction": 4.2}], 1) == [(4.2, None)]
    assert read_predictions({"predictions": [0, 1], "scores": [0.2, 0.8]}, 2) == [(0, 0.2), (1, 0.8)]


def test_an_answer_that_does_not_fit_the_rows_is_refused_and_an_unreadable_row_is_none():
    with pytest.raises(ValueError, match="3 predictions for 2 rows"):
        read_predictions([1, 2, 3], 2)
    with pytest.raises(ValueError, match="str predictions for 1 rows"):
        read_predictions("error", 1)
    assert read_predictions([["x", 0.2], {"a": 1, "b": 2}], 2) == [None, None]


def test_model_card_reads_required_columns_and_classes(tmp_path):
    (tmp_path / "MLmodel").write_text(
        "metadata:\n  classes: [late, on_time]\nsignature:\n  inputs: '[{\"type\": \"double\", \"name\": \"x\", "
        "\"required\": true}, {\"type\": \"string\", \"name\": \"y\", \"required\": false}]'\n")
    assert model_card(tmp_path) == {"classes": ["late", "on_time"], "columns": ["x"]}
    assert model_card(tmp_path / "missing") == {}


def test_the_local_data_collector_files_payloads_as_azure_ml_does_and_refuses_bad_ones(tmp_path):
    clock = ManualClock(datetime(2013, 5, 2, 7, 30, tzinfo=timezone.utc))
    agent = LocalDataCollector(tmp_path, "ep", "blue", clock).start()
    try:
        def post(headers, body):
            request = urllib.request.Request(f"http://127.0.0.1:{agent.port}/modeldata/log", data=body,
                                             headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        records = json.dumps([{"x": 1.5, "correlationid": "r1"}]).encode()
        assert post({"ce-type": "azureml.inference.model_inputs", "trace-id": "p1", "ce-x-request-id": "q1",
                     "Content-Type": "application/json"}, records) == 200
        assert post({"ce-type": "something.else"}, records) == 400
        assert post({"ce-type": "azureml.inference.model_inputs"}, b"{not json") == 400
        files = list((tmp_path / "modelDataCollector/ep/blue/model_inputs/2013/05/02/07").glob("*.jsonl"))
        lines = [json.loads(line) for line in files[0].read_text().splitlines()]
        assert len(files) == 1 and len(lines) == 1 and agent.written == 1
        assert lines[0]["data"] == [{"x": 1.5, "correlationid": "r1"}] and lines[0]["id"] == "p1"
        assert lines[0]["correlationid"] == "q1" and lines[0]["time"] == "2013-05-02T07:30:00Z"
    finally:
        agent.stop()
    assert config_json({"model_inputs": {"enabled": "True", "sampling_rate": 0.25}, "response": {"enabled": False}}) \
        == {"collections": {"model_inputs": {"enabled": True, "sampleRatePercentage": 25},
                            "response": {"enabled": False, "sampleRatePercentage": 100}}, "runMode": "cloud"}


def test_rows_are_sent_as_the_model_was_trained_on_them():
    from retrain.endpoint import conform

    kinds = {"carrier": "categorical", "flight": "categorical", "hour": "numeric"}
    rows = [["UA", 1545, 5, "extra"], [None, None, None, None], ["AA", "12", "7.5", 1], ["B6", 9, "late", 2]]
    assert conform(["carrier", "flight", "hour", "other"], rows, kinds) == [
        ["UA", "1545", 5.0, "extra"], [None, None, None, None], ["AA", "12", 7.5, 1], ["B6", "9", "late", 2]]
    assert conform(["a"], [[1]], {}) == [[1]]
    assert conform(["text", "n"], [["1234", "8"], [42, None]], {"text": "text", "n": "numeric"}) == [
        ["1234", 8.0], ["42", None]]  # a text that reads as a number stays text
