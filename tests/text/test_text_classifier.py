"""The text classifier example follows the training contract: a folder in, an MLflow model out, served without torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "examples" / "text_classifier" / "train.py"
SERVE_PYTHON = ROOT / ".venv-serve" / "bin" / "python"


def _contract_folder(tmp: Path, rows: pd.DataFrame) -> Path:
    data = tmp / "data"
    data.mkdir()
    rows.rename(columns={"author": "label"})[["text", "label", "time"]].to_parquet(data / "train.parquet")
    (data / "schema.json").write_text(json.dumps({"features": {"text": "text"}, "target": "label",
                                                  "task": "multiclass", "time_column": "time"}))
    return data


CACHE = {}


def _train(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TEXT_TRAIN_CACHE": CACHE["dir"]}
    return subprocess.run([sys.executable, str(TRAIN), "--data", str(data), "--target", "label", "--task",
                           "multiclass", "--model-out", str(out), *extra], capture_output=True, text=True, timeout=900,
                          env=env)


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    """One encoder export and embedding cache for this module's runs, not the user's."""
    CACHE["dir"] = str(tmp_path_factory.mktemp("text-train-cache"))


@pytest.fixture(scope="module")
def head_model(tmp_path_factory, traffic):
    """Trained once (head only) on October-December 2015, shared by the tests that read it."""
    tmp = tmp_path_factory.mktemp("head")
    done = _train(_contract_folder(tmp, traffic.iloc[:600]), tmp / "model")
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp / "model"


@pytest.fixture(scope="module")
def traffic():
    from demo.tweets import tweets_history

    return tweets_history(pd.Timestamp("2015-10-01", tz="UTC"), pd.Timestamp("2016-02-01", tz="UTC"))


def test_head_only_model_learns_and_serves_class_probabilities(head_model, traffic):
    from sklearn.metrics import f1_score

    test = traffic.iloc[600:800]
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(head_model))
    classes = model.metadata.metadata["classes"]
    assert classes == ["android", "iphone", "web"]
    proba = model.predict(test[["text"]])
    assert proba.shape == (len(test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    # better than always answering the commonest class (macro F1 of about 0.2 for three classes)
    assert f1_score(test["author"], predicted, average="macro") > 0.4
    # bad input is scored, never raised: empty, missing, non-string, overlong texts
    odd = model.predict(pd.DataFrame({"text": ["", None, 5, "word " * 2000]}))
    assert odd.shape == (4, 3) and np.isfinite(odd).all()


def test_a_second_run_embeds_only_texts_it_has_not_seen(head_model, tmp_path, traffic):
    shards = sorted(Path(CACHE["dir"]).glob("encoder-*/embeddings/*.npz"))
    assert len(shards) == 1  # the head model's 600 texts
    done = _train(_contract_folder(tmp_path, traffic.iloc[500:700]), tmp_path / "again")
    assert done.returncode == 0, done.stderr[-2000:]
    added = set(Path(CACHE["dir"]).glob("encoder-*/embeddings/*.npz")) - set(shards)
    (shard,) = added
    with np.load(shard) as data:
        assert len(data["keys"]) == len(set(traffic.iloc[600:700]["text"]) - set(traffic.iloc[:600]["text"]))


def test_full_fine_tuning_runs_and_exports_what_torch_answers(tmp_path, traffic):
    """One short epoch on a few rows: the encoder's weights move and the ONNX export still matches torch."""
    data = _contract_folder(tmp_path, traffic.iloc[:64])
    done = _train(data, tmp_path / "tuned", "--epochs", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 epochs of fine-tuning" in done.stdout
    head = _train(data, tmp_path / "head")
    assert head.returncode == 0, head.stderr[-2000:]
    tuned = (tmp_path / "tuned" / "artifacts" / "classifier" / "model.onnx").read_bytes()
    frozen = (tmp_path / "head" / "artifacts" / "classifier" / "model.onnx").read_bytes()
    assert tuned != frozen


def test_contract_errors_go_to_stderr_with_a_failing_exit(tmp_path, traffic):
    data = _contract_folder(tmp_path, traffic.iloc[:50].assign(author="android"))
    done = _train(data, tmp_path / "model")
    assert done.returncode != 0 and "single class" in done.stderr
    (data / "schema.json").write_text(json.dumps({"features": {"text": "categorical"}, "target": "label"}))
    done = _train(data, tmp_path / "model2")
    assert done.returncode != 0 and "kind 'text'" in done.stderr


@pytest.mark.skipif(not SERVE_PYTHON.exists(), reason="no serving environment (.venv-serve: make test builds it)")
def test_serving_environment_loads_it_without_torch(head_model):
    probe = ("import sys, mlflow.pyfunc, pandas as pd\n"
             f"m = mlflow.pyfunc.load_model({str(head_model)!r})\n"
             "p = m.predict(pd.DataFrame({'text': ['Thank you Iowa!', 'Crooked Hillary']}))\n"
             "print(p.shape, 'torch' in sys.modules)\n")
    served = subprocess.run([str(SERVE_PYTHON), "-c", probe], capture_output=True, text=True, timeout=300)
    assert served.returncode == 0, served.stderr[-2000:]
    assert served.stdout.split("\n")[-2] == "(2, 3) False"
