"""The `text` feature kind: specs, `monitors init` inference, and the data drift evaluator's settings."""
from __future__ import annotations

import pandas as pd
import pytest

from core.errors import ValidationFailed
from monitors.signals.suite import data_drift_evaluator
from monitors.spec import parse_spec
from monitors.spec_init import spec_text

SPEC = """name: tweets
endpoint: {name: tweets}
model: {name: m}
features:
  - {name: text, kind: text, method: mmd, threshold: 0.02}
  - {name: hour, kind: numeric}
reference: {uri: ref.parquet}
signals:
  data_drift:
    text: {resamples: 30, examples: 0, topics: 5}
"""


def test_a_text_feature_takes_its_method_floor_and_settings():
    spec = parse_spec(SPEC)
    evaluator = data_drift_evaluator(spec)
    assert spec.kinds == {"text": "text", "hour": "numeric"}
    settings = evaluator.text_settings["text"]
    assert (settings.method, settings.floor, settings.resamples, settings.examples, settings.topics) == (
        "mmd", 0.02, 30, 0, 5)
    assert evaluator.methods == {} and evaluator.thresholds == {}  # text settings never reach the tabular engine


def test_a_text_feature_refuses_a_tabular_method_naming_the_line():
    with pytest.raises(ValidationFailed, match=r"line 5: features\.0\.method.*classifier or mmd"):
        parse_spec(SPEC.replace("method: mmd", "method: ks"))


def test_init_infers_free_text_but_not_codes_or_ids(tweets):
    head = tweets.iloc[:200]
    frame = pd.DataFrame({"text": head["text"].to_numpy(), "source": head["source"].to_numpy(),
                          "tweet_id": head["id_str"].astype(str).to_numpy(),
                          "favorites": head["favorite_count"].astype(float).to_numpy()})
    spec = parse_spec(spec_text(frame, "ref.parquet", "tweets", "tweets"))
    assert spec.kinds == {"source": "categorical", "favorites": "numeric", "text": "text"}
