"""Topics of a reference, and which of them grew or shrank in a window: the evidence of text drift.

Topics are k-means clusters of the reference's embeddings (unit vectors, so nearest centroid = most
similar). Each is named by its most distinctive words (class-based TF-IDF over the reference texts) and
shown by its most central text. A window's texts go to their nearest topic; a topic "moved" when its
share changed by at least `MIN_CHANGE` and by more than `Z` binomial standard errors. Texts less similar
to every centroid than 99% of the reference's own texts are counted as "unlike any reference topic".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

MIN_CHANGE = 0.05
Z = 3.0
TERMS = 4
SHOWN = 200  # characters of an example text


@dataclass(frozen=True)
class Topics:
    centroids: np.ndarray  # (k, dim), unit length
    names: tuple[str, ...]
    examples: tuple[str, ...]
    shares: np.ndarray  # reference share of each topic
    far: float  # similarity to the nearest centroid below which a text is unlike every topic (1% of reference)

    def assign(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sims = vectors @ self.centroids.T
        return sims.argmax(axis=1), sims.max(axis=1)

    def compare(self, vectors: np.ndarray, texts: Sequence[str], examples: int = 2) -> dict[str, Any]:
        """Shares of each topic in the window against the reference, the moved ones first."""
        nearest, best = self.assign(vectors)
        m = len(nearest)
        shares = np.bincount(nearest, minlength=len(self.names)) / max(m, 1)
        rows = []
        for k, name in enumerate(self.names):
            ref, cur = float(self.shares[k]), float(shares[k])
            se = np.sqrt(max(ref * (1 - ref), 1e-6) / max(m, 1))
            z = (cur - ref) / se
            moved = abs(cur - ref) >= MIN_CHANGE and abs(z) >= Z
            rows.append({"topic": name, "reference_share": ref, "window_share": cur, "change": cur - ref,
                         "z": float(z), "moved": bool(moved), "example": self.examples[k]})
        rows.sort(key=lambda r: (not r["moved"], -abs(r["change"])))
        unlike = best < self.far
        unlike_examples = [_shown(texts[i]) for i in np.argsort(best)[:examples] if unlike[i]]
        return {"topics": rows, "grew": [r["topic"] for r in rows if r["moved"] and r["change"] > 0],
                "shrank": [r["topic"] for r in rows if r["moved"] and r["change"] < 0],
                "unlike_reference_share": float(unlike.mean()) if m else 0.0,
                "unlike_reference_expected": 0.01, "unlike_reference_examples": unlike_examples}


def fit_topics(vectors: np.ndarray, texts: Sequence[str], k: int | None = None, seed: int = 0) -> Topics:
    from sklearn.cluster import KMeans

    n = len(vectors)
    k = k or int(np.clip(round(np.sqrt(n / 20)), 3, 12))
    k = max(1, min(k, n))
    model = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(vectors)
    centroids = model.cluster_centers_
    centroids = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    sims = vectors @ centroids.T
    labels, best = sims.argmax(axis=1), sims.max(axis=1)
    shares = np.bincount(labels, minlength=k) / n
    central = [int(np.flatnonzero(labels == c)[np.argmax(best[labels == c])]) if (labels == c).any() else -1
               for c in range(k)]
    examples = tuple(_shown(texts[i]) if i >= 0 else "" for i in central)
    return Topics(centroids.astype(np.float32), tuple(_names(texts, labels, k)), examples, shares,
                  float(np.quantile(best, 0.01)))


def _names(texts: Sequence[str], labels: np.ndarray, k: int) -> list[str]:
    """Each topic's TERMS most distinctive words (class-based TF-IDF, Grootendorst 2022)."""
    from sklearn.feature_extraction.text import CountVectorizer

    try:
        vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_][^\W\d_]+\b",
                                     min_df=2, max_features=20000)
        counts = vectorizer.fit_transform(texts)
    except ValueError:  # no word survives (tiny or non-verbal reference): number the topics
        return [f"topic {c + 1}" for c in range(k)]
    words = np.asarray(vectorizer.get_feature_names_out())
    per_topic = np.vstack([np.asarray(counts[labels == c].sum(axis=0)).ravel() for c in range(k)]).astype(float)
    tf = per_topic / np.maximum(per_topic.sum(axis=1, keepdims=True), 1)
    idf = np.log(1 + per_topic.sum(axis=1).mean() / np.maximum(per_topic.sum(axis=0), 1))
    score = tf * idf
    names = []
    for c in range(k):
        top = [str(words[i]) for i in np.argsort(-score[c])[:TERMS] if score[c, i] > 0]
        names.append(", ".join(top) or f"topic {c + 1}")
    return _unique(names)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _shown(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= SHOWN else text[:SHOWN - 1] + "…"
