"""Two-sample Cramer-von Mises p-value as evidently 0.7.23 computes it.

evidently carries its own copy of an older scipy implementation. Its exact branch (both samples of at
most 20 values) sizes its tables with `np.min_scalar_type`, which under numpy 2 gives float32 tables
(so p-values differ from scipy's in the 8th digit) or fails outright. We reproduce the float32 result
for parity, and where evidently would fail we return scipy's exact p-value instead of failing a check.
Algorithm: Xiao, Gordon and Yakovlev (2006), J. Stat. Soft. 17(8); Anderson (1962).
"""
from __future__ import annotations

import math

import numpy as np


def cvm_2samp_pvalue(x_sorted: np.ndarray, y_sorted: np.ndarray) -> float:
    from scipy.stats import rankdata

    nx, ny = x_sorted.size, y_sorted.size
    if nx <= 1 or ny <= 1:
        raise ValueError("cramer_von_mises needs at least two values on each side")
    ranks = rankdata(np.concatenate([x_sorted, y_sorted]), method="average")
    u = nx * np.sum((ranks[:nx] - np.arange(1, nx + 1)) ** 2)
    u += ny * np.sum((ranks[nx:] - np.arange(1, ny + 1)) ** 2)
    k, n = nx * ny, nx + ny
    t = u / (k * n) - (4 * k - 1) / (6 * n)
    if max(nx, ny) <= 20:
        return _exact(u, nx, ny, x_sorted, y_sorted)
    et = (1 + 1 / n) / 6
    vt = (n + 1.0) * (4 * k * n - 3 * (nx**2 + ny**2) - 2 * k)
    vt = vt / (45 * n**2 * 4 * k)
    tn = 1 / 6 + (t - et) / np.sqrt(45 * vt)
    if tn < 0.003:
        return 1.0
    return float(max(0, 1.0 - _cdf_cvm_inf(tn)))


def _exact(u: float, nx: int, ny: int, x: np.ndarray, y: np.ndarray) -> float:
    try:
        return float(_pval_exact(u, nx, ny))
    except TypeError:  # numpy's UFuncTypeError: evidently itself fails here; scipy's answer is exact
        from scipy.stats import cramervonmises_2samp

        return float(cramervonmises_2samp(x, y, method="exact").pvalue)


def _pval_exact(s: float, m: int, n: int) -> np.float64:
    lcm = np.lcm(m, n)
    a = lcm // m
    b = lcm // n
    mn = m * n
    zeta = lcm**2 * (m + n) * (6 * s - mn * (4 * mn - 1)) // (6 * mn**2)
    zeta_bound = lcm**2 * (m + n)
    combinations = math.factorial(m + n) / (math.factorial(m) * math.factorial(n))
    dtype = np.min_scalar_type(max(zeta_bound, combinations))
    gs = [np.array([[0], [1]], dtype=dtype)] + [np.empty((2, 0), dtype=dtype) for _ in range(m)]
    for u in range(n + 1):
        next_gs = []
        tmp = np.empty((2, 0), dtype=dtype)
        for v, g in enumerate(gs):
            vi, i0, i1 = np.intersect1d(tmp[0], g[0], return_indices=True)
            tmp = np.concatenate([np.stack([vi, tmp[1, i0] + g[1, i1]]), np.delete(tmp, i0, 1),
                                  np.delete(g, i1, 1)], 1)
            tmp[0] += (a * v - b * u) ** 2
            next_gs.append(tmp)
        gs = next_gs
    value, freq = gs[m]
    return np.float64(np.sum(freq[value >= zeta]) / combinations)


def _cdf_cvm_inf(x: float) -> np.ndarray:
    """CDF of the limiting Cramer-von Mises distribution (Csorgo and Faraway 1996, eq. 1.2)."""
    from scipy.special import gammaln, kv

    x = np.asarray(x)

    def term(x: np.ndarray, k: int) -> np.ndarray:
        u = np.exp(gammaln(k + 0.5) - gammaln(k + 1)) / (np.pi**1.5 * np.sqrt(x))
        y = 4 * k + 1
        q = y**2 / (16 * x)
        return u * np.sqrt(y) * np.exp(-q) * kv(0.25, q)

    tot = np.zeros_like(x, dtype="float")
    cond = np.ones_like(x, dtype="bool")
    k = 0
    while np.any(cond):
        z = term(x[cond], k)
        tot[cond] = tot[cond] + z
        cond[cond] = np.abs(z) >= 1e-7
        k += 1
    return tot
