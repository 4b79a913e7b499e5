"""Text cleaning and descriptors: what a drift check can say about texts without embeddings.

Descriptors are plain numeric columns (length, words, out-of-vocabulary share, non-letter share) that
the ordinary numeric drift engine checks beside the embedding drift. Bad cells are counted, never raised:
non-strings and empty texts are left out of the embedding statistics, bytes that are not UTF-8 are
decoded with replacement characters.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

DESCRIPTORS = ("chars", "words", "oov_share", "non_letter_share")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


@dataclass(frozen=True)
class CleanTexts:
    texts: list[str]  # the usable texts, in row order
    rows: np.ndarray  # their positions in the column
    problems: Counter = field(default_factory=Counter)  # non_string, empty, non_utf8

    def to_json(self) -> dict[str, int]:
        return {k: int(v) for k, v in sorted(self.problems.items())}


def clean_texts(values: Iterable[object]) -> CleanTexts:
    texts, rows, problems = [], [], Counter()
    for i, value in enumerate(values):
        if isinstance(value, (bytes, bytearray)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                problems["non_utf8"] += 1
                value = bytes(value).decode("utf-8", errors="replace")
        if value is None or (isinstance(value, float) and value != value):
            problems["missing"] += 1
            continue
        if not isinstance(value, str):
            problems["non_string"] += 1
            continue
        if not value.strip():
            problems["empty"] += 1
            continue
        texts.append(value)
        rows.append(i)
    return CleanTexts(texts, np.asarray(rows, dtype=np.int64), problems)


def descriptor_name(column: str, descriptor: str) -> str:
    return f"{column}.{descriptor}"


def descriptor_columns(column: str) -> list[str]:
    return [descriptor_name(column, d) for d in DESCRIPTORS]


def describe(series: "pd.Series", column: str, vocabulary: frozenset[str]) -> "pd.DataFrame":
    """One row per row of `series`: the descriptors of its text (NaN where the cell holds no usable text)."""
    import pandas as pd

    clean = clean_texts(series.tolist())
    out = np.full((len(series), len(DESCRIPTORS)), np.nan)
    for row, text in zip(clean.rows, clean.texts, strict=True):
        words = _WORD.findall(text)
        known = sum(1 for w in words if w.lower() in vocabulary)
        letters = sum(1 for ch in text if ch.isalpha() or ch.isspace())
        out[row] = (len(text), len(text.split()), 1.0 - known / len(words) if words else 0.0,
                    1.0 - letters / len(text))
    return pd.DataFrame(out, columns=descriptor_columns(column), index=series.index)
