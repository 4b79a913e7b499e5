"""Drift methods by evidently's ids, their default thresholds, and evidently's default choice."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from monitors.drift import stattests as st
from monitors.drift.stattests import CATEGORICAL, NUMERIC, Pair


@dataclass(frozen=True)
class Method:
    id: str
    threshold: float
    kinds: tuple[str, ...]
    compute: Callable[[Pair], tuple[float, float | None]]
    p_value: bool  # the statistic is a p-value: small means drift
    strict: bool = False  # p-value tests that use `<` rather than `<=` (evidently's chisquare and z)

    def drifted(self, statistic: float, threshold: float) -> bool:
        if self.p_value:
            return statistic < threshold if self.strict else statistic <= threshold
        return statistic >= threshold


BOTH = (NUMERIC, CATEGORICAL)
METHODS: dict[str, Method] = {m.id: m for m in (
    Method("ks", 0.05, (NUMERIC,), st.ks, p_value=True),
    Method("wasserstein", 0.1, (NUMERIC,), st.wasserstein_norm, p_value=False),
    Method("cramer_von_mises", 0.1, (NUMERIC,), st.cramer_von_mises, p_value=True),
    Method("psi", 0.1, BOTH, st.psi, p_value=False),
    Method("jensenshannon", 0.1, BOTH, st.jensenshannon, p_value=False),
    Method("kl_div", 0.1, BOTH, st.kl_div, p_value=False),
    Method("hellinger", 0.1, BOTH, st.hellinger, p_value=False),
    # evidently registers these two for categoricals, yet its default rule applies them to few-valued numerics
    Method("chisquare", 0.05, BOTH, st.chisquare, p_value=True, strict=True),
    Method("z", 0.05, BOTH, st.z_test, p_value=True, strict=True),
)}


def get_method(method_id: str, kind: str, column: str) -> Method:
    method = METHODS.get(method_id)
    if method is None:
        raise ValueError(f"column {column!r}: unknown drift method {method_id!r}; known: {sorted(METHODS)}")
    if kind not in method.kinds:
        raise ValueError(f"column {column!r}: method {method_id!r} does not apply to {kind} columns")
    return method


def default_method(kind: str, reference_rows: int, n_values: int) -> str:
    """evidently's _get_default_stattest; n_values counts distinct values of reference and current together."""
    if reference_rows <= 1000:
        if kind == NUMERIC and n_values > 5:
            return "ks"
        return "chisquare" if n_values > 2 else "z"
    if kind == NUMERIC:
        return "wasserstein" if n_values > 5 else "jensenshannon"
    return "jensenshannon"


def needs_union(kind: str, reference_rows: int, reference_nunique: int) -> bool:
    """Whether the current window's values can change the default method (else the reference decides)."""
    if kind == NUMERIC:
        return reference_nunique <= 5
    return reference_rows <= 1000 and reference_nunique <= 2
