"""ONNX embeddings equal sentence-transformers' (torch) ones; bad text is counted, never raised."""
from __future__ import annotations

import numpy as np

from monitors.text.descriptors import clean_texts, describe


def test_onnx_embeddings_equal_sentence_transformers(embedder, tweets):
    from sentence_transformers import SentenceTransformer

    from monitors.text.embed import packaged_model

    texts = tweets["text"].iloc[::997].tolist() + ["short", "a much longer text " * 40]
    ours = embedder.encode(texts).vectors
    theirs = SentenceTransformer(str(packaged_model()), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (len(texts), 384)
    assert np.abs(ours - theirs).max() < 1e-4


def test_long_texts_are_truncated_and_counted(embedder):
    encoded = embedder.encode(["word " * 600, "short text"])
    assert encoded.truncated == 1
    assert np.allclose(np.linalg.norm(encoded.vectors, axis=1), 1.0, atol=1e-5)


def test_bad_cells_are_counted_not_raised(embedder):
    import pandas as pd

    cells = ["fine text here", "", "   ", None, float("nan"), 42, {"a": 1}, b"caf\xc3\xa9 ok", b"\xff\xfe broken"]
    clean = clean_texts(cells)
    assert clean.texts == ["fine text here", "café ok", "\ufffd\ufffd broken"]
    assert clean.to_json() == {"empty": 2, "missing": 2, "non_string": 2, "non_utf8": 1}
    described = describe(pd.Series(cells, dtype=object), "t", embedder.vocabulary())
    assert described["t.words"].notna().sum() == 3 and described.loc[0, "t.words"] == 3
    assert described.loc[0, "t.oov_share"] == 0.0
