"""Drift statistics on binned counts (pure numpy): one pair of count vectors, or a batch of rows.

The scalar functions (:func:`psi`, :func:`js_distance`, :func:`ks_statistic`,
:func:`chi2_pvalue`) take one baseline and one window count vector on the same bins; they are the
reference definitions, checked against scipy in the tests. The ``*_rows`` functions compute the
same statistics for many features at once, one feature per row of two ``(F, K)`` arrays padded with
columns that are empty in both (a padded column adds exactly 0 to every statistic): the drift
window closes all its features with one pass of numpy instead of one per feature.

* **PSI** ``Σ (q−p)·ln(q/p)``, every share floored at :data:`PSI_EPSILON` (1e-4);
* **Jensen–Shannon distance**, base 2, on the unsmoothed shares (``scipy.spatial.distance
  .jensenshannon(p, q, base=2)``);
* **KS statistic**: ``max |F_p − F_q|`` over the bins' upper edges;
* **χ² p-value** of the 2×K homogeneity table, empty columns dropped, Yates' correction at one
  degree of freedom (``scipy.stats.chi2_contingency``), through :func:`chi2_sf` (pure Python, so
  the record processor does not import ``scipy.stats``).

>>> round(psi(np.array([50, 50]), np.array([25, 75])), 4)
0.2747
>>> a, b = np.array([[50, 50, 0], [10, 20, 30]]), np.array([[25, 75, 0], [10, 20, 30]])
>>> [round(float(x), 4) for x in psi_rows(a, b)]
[0.2747, 0.0]
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Floor on every bin share before PSI (so ln(q/p) stays finite for empty bins).
PSI_EPSILON = 1e-4
#: Jensen–Shannon distance is computed in base 2, so it lies in [0, 1].
JS_BASE = 2.0


# -- one pair of count vectors ----------------------------------------------------------------
def shares(counts: IntArray | FloatArray) -> FloatArray:
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c / total if total > 0 else np.zeros_like(c)


def psi(expected: IntArray, actual: IntArray, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of ``actual`` against ``expected`` counts on the same bins."""
    p = np.maximum(shares(expected), epsilon)
    q = np.maximum(shares(actual), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def _rel_entr(x: FloatArray, y: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0) / np.where(y > 0, y, 1.0)), 0.0)
    return np.where((x > 0) & (y <= 0), np.inf, out)


def js_distance(expected: IntArray, actual: IntArray, base: float = JS_BASE) -> float:
    """Jensen–Shannon distance (base 2 by default) between the two count vectors' shares."""
    p, q = shares(expected), shares(actual)
    m = (p + q) / 2.0
    js = np.sum(_rel_entr(p, m) + _rel_entr(q, m)) / 2.0
    js /= np.log(base)
    return float(np.sqrt(max(js, 0.0)))


def ks_statistic(expected: IntArray, actual: IntArray) -> float:
    """``max |CDF_expected − CDF_actual|`` over the bins' upper edges."""
    cp, cq = np.cumsum(shares(expected)), np.cumsum(shares(actual))
    return float(np.max(np.abs(cp - cq))) if cp.size else 0.0


def chi2_pvalue(expected: IntArray, actual: IntArray) -> float:
    """p-value of the χ² test of homogeneity on the 2×K table (as ``chi2_contingency``)."""
    table = np.vstack([np.asarray(expected, np.float64), np.asarray(actual, np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    total = table.sum()
    exp = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    dof = table.shape[1] - 1
    diff = table - exp
    if dof == 1:  # Yates' continuity correction, as scipy applies by default
        diff = diff - np.sign(diff) * np.minimum(0.5, np.abs(diff))
    stat = float(np.sum(diff * diff / exp))
    return chi2_sf(stat, dof)


def chi2_sf(x: float, dof: int) -> float:
    """Survival function of the χ² distribution, ``Q(dof/2, x/2)`` (regularised upper incomplete
    gamma): series below ``a + 1``, Lentz's continued fraction above. Pure Python so the record
    processor does not import ``scipy.stats`` (~75 MiB); scipy is the test oracle."""
    if x <= 0:
        return 1.0
    a, z = dof / 2.0, x / 2.0
    log_prefactor = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1.0:
        term = total = 1.0 / a
        n = a
        for _ in range(1000):
            n += 1.0
            term *= z / n
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefactor))
    tiny = 1e-300
    b = z + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return math.exp(log_prefactor) * h


# -- one feature per row ------------------------------------------------------------------------
def row_shares(counts: FloatArray) -> FloatArray:
    """Each row divided by its total (a row of zeros stays zeros)."""
    total = counts.sum(axis=1, keepdims=True)
    return np.asarray(np.divide(counts, total, out=np.zeros_like(counts), where=total > 0))


def psi_rows(expected: FloatArray, actual: FloatArray, epsilon: float = PSI_EPSILON) -> FloatArray:
    """:func:`psi` of each row pair."""
    p = np.maximum(row_shares(np.asarray(expected, np.float64)), epsilon)
    q = np.maximum(row_shares(np.asarray(actual, np.float64)), epsilon)
    return psi_of_floored(p, q)


def psi_of_floored(p: FloatArray, q: FloatArray) -> FloatArray:
    """PSI of each row from shares already floored at the epsilon."""
    return np.asarray(np.sum((q - p) * np.log(q / p), axis=1))


def js_rows(expected: FloatArray, actual: FloatArray, base: float = JS_BASE) -> FloatArray:
    """:func:`js_distance` of each row pair."""
    p = row_shares(np.asarray(expected, np.float64))
    q = row_shares(np.asarray(actual, np.float64))
    return js_of_shares(p, q, base)


def js_of_shares(p: FloatArray, q: FloatArray, base: float = JS_BASE) -> FloatArray:
    """Jensen–Shannon distance of each row from the shares."""
    m = (p + q) / 2.0
    safe_m = np.where(m > 0, m, 1.0)  # m > 0 wherever p or q is: no infinite term here
    js_p = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / safe_m), 0.0)
    js_q = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0) / safe_m), 0.0)
    js = np.sum(js_p + js_q, axis=1) / 2.0
    js /= np.log(base)
    return np.asarray(np.sqrt(np.maximum(js, 0.0)))


def ks_rows(expected: FloatArray, actual: FloatArray) -> FloatArray:
    """:func:`ks_statistic` of each row pair."""
    cp = np.cumsum(row_shares(np.asarray(expected, np.float64)), axis=1)
    cq = np.cumsum(row_shares(np.asarray(actual, np.float64)), axis=1)
    return np.asarray(np.max(np.abs(cp - cq), axis=1))


def chi2_rows(expected: FloatArray, actual: FloatArray) -> tuple[FloatArray, IntArray]:
    """The Pearson χ² statistic (Yates' correction where one degree of freedom is left) and the
    degrees of freedom of each row pair's 2×K table, as :func:`chi2_pvalue` computes them; dof 0
    where the table has fewer than two non-empty columns or an empty row."""
    b = np.asarray(expected, np.float64)
    w = np.asarray(actual, np.float64)
    col = b + w
    dof = np.count_nonzero(col > 0, axis=1) - 1
    m, n = b.sum(axis=1, keepdims=True), w.sum(axis=1, keepdims=True)
    total = m + n
    with np.errstate(divide="ignore", invalid="ignore"):
        eb, ew = m * col / total, n * col / total
        db, dw = b - eb, w - ew
        yates = (dof == 1)[:, None]
        db = np.where(yates, db - np.sign(db) * np.minimum(0.5, np.abs(db)), db)
        dw = np.where(yates, dw - np.sign(dw) * np.minimum(0.5, np.abs(dw)), dw)
        x = np.where(col > 0, db * db / eb + dw * dw / ew, 0.0).sum(axis=1)
    ok = (dof >= 1) & (m[:, 0] > 0) & (n[:, 0] > 0)
    return np.where(ok, x, 0.0), np.where(ok, dof, 0).astype(np.int64)
