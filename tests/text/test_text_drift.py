"""Embedding drift through the data drift signal and the CLI, on real tweets (calibrated, with evidence)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from core.types import EndpointRef, TelemetryBatch
from monitors.cli import main
from monitors.signals.data_drift import DataDriftEvaluator
from monitors.text.drift import TextSettings

SMALL = TextSettings(resamples=20, max_reference_rows=800)


def _period(tweets, start, end):
    at = tweets["created_at"]
    return tweets[(at >= pd.Timestamp(start, tz="UTC")) & (at < pd.Timestamp(end, tz="UTC"))]


def _check(embedder, reference, current, cache, **kw):
    evaluator = DataDriftEvaluator({"text": "text"}, text_default=SMALL, embedder=embedder,
                                   calibration_dir=cache, **kw)
    fitted = evaluator.fit(reference[["text"]].reset_index(drop=True))
    from core.types import Window
    from monitors.cli import _NOMINAL

    batch = TelemetryBatch(EndpointRef("t"), Window(_NOMINAL.start, _NOMINAL.end), current[["text"]])
    return {f.name: f for f in fitted.evaluate(batch)}


def test_random_halves_of_one_period_do_not_drift(embedder, tweets, text_cache):
    period = _period(tweets, "2015-09-01", "2015-11-01")
    half = np.random.default_rng(3).random(len(period)) < 0.5
    found = _check(embedder, period[half], period[~half], text_cache)
    assert found["text"].details["calibrated"]["significant"] is False
    assert not found["dataset"].breached


def test_the_presidency_drifts_from_the_campaign_and_names_the_topics(embedder, tweets, text_cache):
    found = _check(embedder, _period(tweets, "2015-07-01", "2015-11-01"), _period(tweets, "2017-05-01", "2017-06-01"),
                   text_cache)
    text = found["text"]
    assert text.breached and found["dataset"].breached
    assert text.statistic > text.details["calibrated"]["null_q99"] and text.statistic >= 0.6
    evidence = text.details["evidence"]
    assert evidence["grew"] or evidence["shrank"]
    assert len(evidence["typical_window"]) == 3 and len(evidence["typical_reference"]) == 3
    assert "text.chars" in found  # descriptors are checked as numeric features beside the embeddings


def test_mmd_is_the_alternative_and_overlong_texts_are_truncated_and_counted(embedder, tweets, text_cache):
    window = _period(tweets, "2017-05-01", "2017-06-01")
    overlong = pd.DataFrame({"text": [" ".join(window["text"].iloc[:40]), "word " * 2000]})  # over 256 tokens
    found = _check(embedder, _period(tweets, "2015-07-01", "2015-11-01"), pd.concat([window, overlong]),
                   text_cache, text_settings={"text": TextSettings(method="mmd", resamples=20, max_reference_rows=800)})
    assert found["text"].method == "mmd" and found["text"].breached
    assert found["text"].details["truncated"] == 2


def test_cli_check_on_parquet_reports_text_drift_and_topics(embedder, tweets, tmp_path, capsys):
    _period(tweets, "2015-07-01", "2015-11-01")[["text", "favorite_count"]].to_parquet(tmp_path / "ref.parquet")
    _period(tweets, "2017-05-01", "2017-06-01")[["text", "favorite_count"]].to_parquet(tmp_path / "cur.parquet")
    code = main(["check", "--reference", str(tmp_path / "ref.parquet"), "--current", str(tmp_path / "cur.parquet"),
                 "--fail-on-drift"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["dataset_drift"]
    (text,) = doc["text"]
    assert text["column"] == "text" and text["drifted"] and text["method"] == "classifier"
    assert text["grew"] or text["shrank"]
    assert {t["topic"] for t in text["topics"]} >= set(text["grew"])


def test_bad_window_text_is_counted_and_a_tiny_window_is_insufficient(embedder, tweets, text_cache):
    reference = _period(tweets, "2015-07-01", "2015-09-01")
    # 40 rows (the window's min_rows is 30), 9 usable texts (a text test needs 10); bytes decode with replacements
    current = pd.DataFrame({"text": ["ok then", None, 5, ""] * 8 + [b"\xff"] + [None] * 7})
    found = _check(embedder, reference, current, text_cache)
    assert found["text"].details["insufficient"] is True and not found["text"].breached
    assert found["text"].details["text_problems"] == {"empty": 8, "missing": 15, "non_string": 8, "non_utf8": 1}
    tiny = _check(embedder, reference, current.head(10), text_cache)  # under the window's min_rows: no verdict
    assert not any(f.breached for f in tiny.values()) and all(f.details.get("insufficient") for f in tiny.values())
