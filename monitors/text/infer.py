"""Which string columns hold free text (sentences, not codes): for `monitors init` and the CLI."""
from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

MIN_WORDS = 3.0  # mean words per value: "NYC", "JFK-LAX" and ids are not text
MIN_DISTINCT = 0.5  # share of distinct values: a category list repeats, free text mostly does not
SAMPLE = 20_000  # values looked at per column: enough to tell sentences from codes, cheap on a million rows


def infer_text_columns(frame: "pd.DataFrame", skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
    from pandas.api.types import is_numeric_dtype

    from monitors.drift.profile import _ID_NAME

    out = []
    for name in frame.columns:
        name = str(name)
        if name in skip or _ID_NAME.search(name) or is_numeric_dtype(frame[name].dtype):
            continue  # numbers and booleans are never sentences: no need to look at a million of them
        values = frame[name].dropna()
        if len(values) > SAMPLE:  # a fixed, seeded sample: the same file always gets the same kinds
            values = values.sample(SAMPLE, random_state=0)
        strings = values[values.map(lambda v: isinstance(v, str))] if len(values) else values
        if len(strings) < max(10, 0.5 * len(values)) or not len(strings):
            continue
        words = strings.str.split().str.len().mean()
        if words >= MIN_WORDS and strings.nunique() > MIN_DISTINCT * len(strings):
            out.append(name)
    return out


def text_stack_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "tokenizers"))
