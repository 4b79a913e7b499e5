"""Embedding drift of one text column, decided the calibrated way.

Fit (once per reference): embed up to `max_reference_rows` reference texts (kept in their time order),
find their topics. Check: embed the window's texts (up to `max_rows`, a seeded sample), compute the
statistic against a sample of the reference, and compare it with its no-drift null: the same statistic
for windows of the same size cut from the reference itself as contiguous runs, so the reference's own
day-to-day variation (news cycles, campaigns, seasons) is what "no drift" means. The p-value is the
null's normal tail (the AUC and MMD^2 of exchangeable samples are close to normal), so a few dozen null
draws serve any false-alarm budget; the effect floor keeps significant-but-tiny shifts of large windows
quiet. Nulls are cached per window size on a geometric grid, like the tabular calibrator's.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.files import cached
from monitors.drift.calibration import grid_size
from monitors.text import stats
from monitors.text.descriptors import clean_texts
from monitors.text.topics import Topics, _shown, fit_topics

DEFAULT_FLOORS = {stats.CLASSIFIER: 0.6, stats.MMD: 0.01}  # AUC 0.6: a fifth of the window is tellable apart
MIN_ROWS = 10
MAX_COMPARE = 2000
SEED = 13


@dataclass(frozen=True)
class TextSettings:
    method: str = stats.CLASSIFIER
    effect_floor: float | None = None  # None: DEFAULT_FLOORS[method]
    resamples: int = 40
    max_rows: int = 1000
    max_reference_rows: int = 3000
    topics: int | None = None  # None: from the reference size
    examples: int = 3  # typical texts shown per side in the evidence; 0 keeps raw text out of reports

    @property
    def floor(self) -> float:
        return DEFAULT_FLOORS[self.method] if self.effect_floor is None else float(self.effect_floor)


@dataclass
class FittedText:
    """One text column's reference: embeddings in time order, topics, and a cache of no-drift nulls."""

    column: str
    settings: TextSettings
    vectors: np.ndarray
    texts: list[str]
    topics: Topics
    width: float
    key: str  # content address of the reference embeddings and settings (keys the null cache)
    embedder: Any
    cache_dir: Path | None = None
    problems: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    _nulls: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.vectors)

    def evaluate(self, values: Sequence[object], fwer: float, family: int) -> dict[str, Any]:
        """The column's drift row: statistic, null, p-value, floor; `family` texts share `fwer` (Bonferroni)."""
        clean = clean_texts(values)
        rng = np.random.default_rng(SEED)
        texts = clean.texts
        if len(texts) > self.settings.max_rows:
            texts = [texts[i] for i in np.sort(rng.choice(len(texts), self.settings.max_rows, replace=False))]
        base = {"column": self.column, "method": self.settings.method, "window_texts": len(clean.texts),
                "used_texts": len(texts), "reference_texts": self.rows, "problems": clean.to_json(),
                "embedding_model": getattr(self.embedder, "identity", None)}
        if len(texts) < MIN_ROWS or self.rows < 2 * MIN_ROWS:
            return {**base, "tested": False, "drifted": False, "statistic": None, "p_value": None,
                    "note": f"fewer than {MIN_ROWS} usable texts in the window" if len(texts) < MIN_ROWS
                    else "the reference holds too few usable texts"}
        encoded = self.embedder.encode(texts)
        current = encoded.vectors
        compare = _compare_rows(self.rows, len(texts), rng)
        result = stats.statistic(self.settings.method, self.vectors[compare], current, rng, self.width)
        null = self.null(len(texts))
        mean, sd = float(null.mean()), float(max(null.std(ddof=1), 1e-9))
        z = (result.value - mean) / sd
        p_value = float(_normal_sf(z))
        alpha = fwer / max(family, 1)
        floor = self.settings.floor
        significant = p_value <= alpha
        row = {**base, "tested": True, "statistic": result.value, "p_value": p_value, "alpha": alpha,
               "null_mean": mean, "null_sd": sd, "null_q99": float(np.quantile(null, 0.99)),
               "null_draws": int(null.size), "z": float(z), "floor": floor, "significant": bool(significant),
               "drifted": bool(significant and result.value >= floor), "truncated": int(encoded.truncated)}
        row["evidence"] = self._evidence(current, texts, result.scores, compare)
        return row

    def null(self, rows: int) -> np.ndarray:
        size = min(grid_size(rows), self.rows // 2)
        if size not in self._nulls:
            path = self._path(size)
            self._nulls[size] = self._draw(size) if path is None else cached(
                path, lambda p: np.load(p, allow_pickle=False), lambda: self._draw(size), _save_npy)
        return self._nulls[size]

    def _draw(self, size: int) -> np.ndarray:
        rng = np.random.default_rng([SEED, size, self.settings.resamples])
        n, out = self.rows, np.empty(self.settings.resamples)
        contiguous = n - size >= max(2 * MIN_ROWS, size)
        for i in range(out.size):
            if contiguous:  # a run of the reference as the window, the rest as what it is compared with
                start = int(rng.integers(0, n - size + 1))
                window = np.arange(start, start + size)
                rest = np.r_[np.arange(0, start), np.arange(start + size, n)]
            else:  # too short for runs: a random split
                perm = rng.permutation(n)
                window, rest = np.sort(perm[:size]), perm[size:]
            compare = rest[_compare_rows(rest.size, size, rng)]
            out[i] = stats.statistic(self.settings.method, self.vectors[compare], self.vectors[window], rng,
                                     self.width).value
        out.sort()
        return out

    def _evidence(self, current: np.ndarray, texts: list[str], scores: np.ndarray | None,
                  compare: np.ndarray) -> dict[str, Any]:
        evidence = self.topics.compare(current, texts, examples=self.settings.examples)
        shown = self.settings.examples
        if not shown:
            evidence.update(unlike_reference_examples=[], topics=[{**t, "example": None} for t in evidence["topics"]])
            return evidence
        direction = current.mean(axis=0) - self.vectors[compare].mean(axis=0)
        window_scores = scores if scores is not None else current @ direction
        reference_scores = self.vectors[compare] @ direction
        evidence["typical_window"] = [_shown(texts[i]) for i in np.argsort(-window_scores)[:shown]]
        evidence["typical_reference"] = [_shown(self.texts[compare[i]]) for i in np.argsort(reference_scores)[:shown]]
        return evidence

    def _path(self, size: int) -> Path | None:
        if self.cache_dir is None:
            return None
        text = json.dumps([self.key, size, self.settings.method, self.settings.resamples, MAX_COMPARE, SEED,
                           stats.RIDGE, stats.FOLDS, stats.MMD_ROWS])
        return self.cache_dir / f"textnull-{hashlib.sha256(text.encode()).hexdigest()[:32]}.npy"



def fit_text(column: str, values: Sequence[object], settings: TextSettings, embedder: Any,
             cache_dir: Path | None = None) -> FittedText:
    """Embed the reference texts (cached by content) and find their topics."""
    clean = clean_texts(values)
    texts = clean.texts
    if len(texts) > settings.max_reference_rows:  # an evenly spaced sample keeps the time order and its runs
        keep = np.linspace(0, len(texts) - 1, settings.max_reference_rows).round().astype(np.int64)
        texts = [texts[i] for i in keep]
    key = _content_key(texts, getattr(embedder, "identity", type(embedder).__name__))
    vectors, truncated = cached_embeddings(texts, embedder, key, cache_dir)
    rng = np.random.default_rng(SEED)
    width = stats.bandwidth(vectors, rng) if len(vectors) > 1 else 1.0
    topics = fit_topics(vectors, texts, settings.topics) if len(vectors) >= 3 else _no_topics(vectors)
    return FittedText(column, settings, vectors, texts, topics, width, key, embedder, cache_dir,
                      clean.to_json(), truncated)


def cached_embeddings(texts: list[str], embedder: Any, key: str, cache_dir: Path | None) -> tuple[np.ndarray, int]:
    """Embeddings of `texts`, kept in `cache_dir` by content (a damaged file is recomputed)."""
    def build() -> dict[str, np.ndarray]:
        encoded = embedder.encode(texts)
        return {"vectors": encoded.vectors, "truncated": np.array(encoded.truncated)}

    def load(path: Path) -> dict[str, np.ndarray]:
        with np.load(path, allow_pickle=False) as data:
            return {"vectors": data["vectors"], "truncated": data["truncated"]}

    found = build() if cache_dir is None else cached(cache_dir / f"embeddings-{key}.npz", load, build,
                                                     lambda value, out: np.savez(out, **value))
    return found["vectors"], int(found["truncated"])


def _save_npy(values: np.ndarray, out: Any) -> None:
    np.save(out, values)


def _content_key(texts: list[str], identity: str) -> str:
    digest = hashlib.sha256(identity.encode())
    for text in texts:
        digest.update(text.encode("utf-8", errors="replace"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _compare_rows(n: int, window: int, rng: np.random.Generator) -> np.ndarray:
    """Which reference rows the window is compared with: twice the window, at least 200, at most MAX_COMPARE."""
    k = min(n, max(2 * window, 200), MAX_COMPARE)
    return np.sort(rng.choice(n, k, replace=False)) if k < n else np.arange(n)


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _no_topics(vectors: np.ndarray) -> Topics:
    dim = vectors.shape[1] if vectors.ndim == 2 else 1
    return Topics(np.zeros((1, dim), dtype=np.float32), ("all texts",), ("",), np.ones(1), -1.0)
