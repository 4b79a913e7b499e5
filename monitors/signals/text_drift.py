"""Text columns inside the data drift signal: embedding drift per text column plus its descriptors.

Descriptors (length, words, out-of-vocabulary share, non-letter share) join the tabular features as
numeric columns named `<column>.<descriptor>`, checked by the drift engine like any other. The embedding
test of each text column is decided by `monitors.text.drift`. The family-wise false alarm budget is split:
half for the tabular features (descriptors included, Holm inside), half for the embedding tests
(Bonferroni across text columns); a monitor with only one kind gives it the whole budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from core.types import Finding, Severity

SIGNAL = "data_drift"
TEXT = "text"


@dataclass(frozen=True)
class FittedTextPart:
    columns: Mapping[str, Any]  # column -> monitors.text.drift.FittedText
    vocabulary: frozenset[str]
    describe: bool

    @property
    def descriptor_kinds(self) -> dict[str, str]:
        from monitors.text.descriptors import descriptor_columns

        if not self.describe:
            return {}
        return {name: "numeric" for column in self.columns for name in descriptor_columns(column)}

    def augment(self, frame):
        """`frame` with the descriptor columns of every text column it holds."""
        import pandas as pd

        from monitors.text.descriptors import describe

        if not self.describe:
            return frame
        parts = [describe(frame[c], c, self.vocabulary) for c in self.columns if c in frame]
        return pd.concat([frame, *parts], axis=1) if parts else frame

    def budget(self, fwer: float, tabular_features: int) -> tuple[float, float]:
        """(tabular fwer, text fwer)."""
        if not self.columns:
            return fwer, 0.0
        if not tabular_features:
            return 0.0, fwer
        return fwer / 2, fwer / 2

    def evaluate(self, frame, fwer: float, severity: Severity, policy: str) -> list[Finding]:
        findings = []
        for column, fitted in self.columns.items():
            if column not in frame:
                findings.append(Finding(SIGNAL, column, None, None, False, method=fitted.settings.method,
                                        details={"kind": TEXT, "note": "column missing from the current window",
                                                 "insufficient": True}))
                continue
            row = fitted.evaluate(frame[column].tolist(), fwer if policy == "calibrated" else 0.05, len(self.columns))
            findings.append(_finding(row, severity))
        return findings


def fit_text_part(kinds: Mapping[str, str], reference, settings: Mapping[str, Any], *, default: Any,
                  embedder: Any = None, cache_dir: Path | None = None, describe: bool = True) -> FittedTextPart:
    """Fit every text column of `kinds` found in `reference` (embeddings cached by content in `cache_dir`)."""
    from monitors.text.drift import fit_text
    from monitors.text.embed import shared_embedder

    columns = [c for c, k in kinds.items() if k == TEXT and c in reference]
    embedder = embedder or shared_embedder()
    fitted = {c: fit_text(c, reference[c].tolist(), settings.get(c, default), embedder, cache_dir) for c in columns}
    return FittedTextPart(fitted, embedder.vocabulary() if describe else frozenset(), describe)


def _finding(row: dict[str, Any], severity: Severity) -> Finding:
    breached = bool(row.get("drifted"))
    calibrated = {k: row[k] for k in ("p_value", "alpha", "null_mean", "null_sd", "null_q99", "null_draws", "z",
                                      "floor", "significant", "drifted") if k in row}
    details = {"kind": TEXT, "effect": row.get("statistic"), "reference_rows": row["reference_texts"],
               "current_rows": row["used_texts"], "window_texts": row["window_texts"],
               "text_problems": row["problems"], "truncated": row.get("truncated", 0),
               "embedding_model": row.get("embedding_model"), "calibrated": calibrated,
               "evidence": row.get("evidence", {})}
    if not row["tested"]:
        details.update(note=row["note"], insufficient=True)
    return Finding(SIGNAL, row["column"], row.get("statistic"), row.get("floor"), breached,
                   severity if breached else Severity.INFO, method=row["method"], p_value=row.get("p_value"),
                   details=details)


def text_summary(findings: list[Finding]) -> list[dict[str, Any]]:
    """Per text column: the decision and what moved (topics that grew or shrank, typical texts)."""
    out = []
    for f in findings:
        if f.signal != SIGNAL or f.details.get("kind") != TEXT:
            continue
        evidence = f.details.get("evidence") or {}
        out.append({"column": f.name, "method": f.method, "statistic": f.statistic, "p_value": f.p_value,
                    "floor": f.threshold, "drifted": f.breached, "note": f.details.get("note"),
                    "grew": evidence.get("grew", []), "shrank": evidence.get("shrank", []),
                    "unlike_reference_share": evidence.get("unlike_reference_share"),
                    "topics": evidence.get("topics", []),
                    "typical_window": evidence.get("typical_window", []),
                    "typical_reference": evidence.get("typical_reference", [])})
    return out
