"""Thresholds calibrated to a false-alarm rate, from the baseline's own bins (pure numpy).

Each feature's per-window **evidence** is a z-score: the largest of

* the two-sample Pearson χ² of homogeneity between the baseline's and the window's counts over the
  value bins **plus a null bin** (nulls and non-finite values), Wilson–Hilferty-transformed to the
  normal scale, so that it means the same at any number of degrees of freedom; and
* for numeric features, the two-sample Kolmogorov–Smirnov statistic on the binned CDFs of the
  non-null values (the χ² spreads its power over every bin; KS concentrates it on shifts of
  location and scale), through Kolmogorov's asymptotic tail to the normal scale;
* for continuous numeric features, the binomial tail of the window's values outside the
  baseline's ``[min, max]`` (a new draw of a continuous variable falls outside the range of ``m``
  earlier ones with probability ``2 / (m + 1)``);
* for numeric features, the two-sample Wilcoxon–Mann–Whitney rank test on the binned values,
  two-sided (:func:`rank_z`): a shift of location moves every window value's rank, so the rank
  test sees a 0.25 sd shift in one 500-row window where the KS statistic, a maximum over the
  bins' edges, needs about two. It is left out of the CUSUM's input: the larger of two
  near-normal z's has a null mean above the CUSUM's reference value ``k``.

Under "no change" each is close to a standard normal, but not exactly (few rows per bin,
discrete counts, one degree of freedom...). :func:`calibrate_feature` therefore draws null windows
of ``window_rows`` rows: the truth ``p* ~ Dirichlet(baseline counts)`` (so the baseline's own
sampling error is in, as the two-sample test assumes), then ``multinomial(window_rows, p*)``, and
computes the evidence of each. The per-window threshold is the null distribution's ``1 − α/2``
quantile (``α`` = the target false-alarm rate per window and feature); below what the draws can
resolve the tail is extrapolated with the normal's shape from the 50th-largest draw. The other
``α/2`` goes to the CUSUM over windows (:mod:`etl.cusum`): its threshold ``h`` makes the average
run length under the null, computed exactly for the simulated null distribution by the
Brook–Evans Markov chain, ``2/α`` windows (with a 25 % margin for the chain's discretisation).

>>> cal = calibrate_feature(np.array([900, 100]), 0, window_rows=500, target_rate=1e-4, seed=1)
>>> 3.0 < cal.z_threshold < 5.0 and 4.0 < cal.cusum_threshold < 12.0
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Default false-alarm rate: one window per 10,000 per feature (half per window, half CUSUM).
DEFAULT_TARGET_RATE = 1e-4
DEFAULT_WINDOW_ROWS = 500
DEFAULT_DRAWS = 20_000
#: CUSUM reference value in z units: tuned to persistent shifts of about one z per window.
CUSUM_K = 0.5
#: Evidence is clipped to this many z (beyond it nothing changes and floats stay finite).
Z_MAX = 40.0
#: The Brook–Evans chain on 64 cells overstates the run length by up to ~10 %: aim 25 % higher.
ARL_MARGIN = 1.25
#: What the evidence is made of: 1 = χ², KS, out-of-range; 2 = the same and the rank test.
#: Thresholds calibrated for another version are recalibrated when a window opens.
EVIDENCE_VERSION = 2
_TAIL_DRAWS = 50
_NORMAL = NormalDist()


# -- evidence (shared by the windows and the null draws) ----------------------------------------
def wilson_hilferty(x: FloatArray | float, dof: FloatArray | IntArray | float) -> FloatArray:
    """χ²(dof) statistic → approximately standard normal z (0 where dof is 0)."""
    x_arr = np.asarray(x, np.float64)
    k = np.maximum(np.asarray(dof, np.float64), 1e-12)
    c = 2.0 / (9.0 * k)
    z = (np.cbrt(x_arr / k) - (1.0 - c)) / np.sqrt(c)
    z = np.minimum(np.maximum(z, -Z_MAX), Z_MAX)  # np.clip, without its dispatch overhead
    return np.asarray(np.where(np.asarray(dof) > 0, z, 0.0))


def chi2_homogeneity(base: IntArray, window: IntArray) -> tuple[FloatArray, int]:
    """Pearson χ² of the 2×K table per row of ``window`` (shape ``(K,)`` or ``(S, K)``), and the
    degrees of freedom; columns empty in the baseline and in every window are dropped."""
    b = np.asarray(base, np.float64)
    w = np.atleast_2d(np.asarray(window, np.float64))
    keep = (b > 0) | (w.sum(axis=0) > 0)
    b, w = b[keep], w[:, keep]
    m, n = b.sum(), w.sum(axis=1, keepdims=True)
    if b.size < 2 or m == 0:
        return np.zeros(w.shape[0]), 0
    total = b + w
    grand = m + n
    eb, ew = m * total / grand, n * total / grand
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(total > 0, (b - eb) ** 2 / eb + (w - ew) ** 2 / ew, 0.0).sum(axis=1)
    return np.where(n[:, 0] > 0, x, 0.0), int(b.size - 1)


def binomial_sf_z(x: int, n: int, rate: float) -> float:
    """``P(Binomial(n, rate) ≥ x)`` as a z-score (``Φ⁻¹(1 − p)``); very negative when ``x = 0``."""
    if x <= 0 or rate <= 0.0:
        return -Z_MAX if x <= 0 else Z_MAX
    if rate >= 1.0:
        return -Z_MAX
    lq, lp = math.log1p(-rate), math.log(rate)
    log_term = math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1) + x * lp
    log_term += (n - x) * lq
    if log_term < -700.0:  # the tail is beyond double precision: its first term says it all
        return min(Z_MAX, math.sqrt(-2.0 * log_term))
    total, term, i = 0.0, math.exp(log_term), x
    while i <= n:
        total += term
        if i > n * rate and term < total * 1e-16:
            break
        term *= (n - i) / (i + 1) * rate / (1.0 - rate)
        i += 1
    p = min(1.0, total)
    if p >= 1.0:
        return -Z_MAX
    if p < 1e-300:
        return Z_MAX
    return float(np.clip(-_NORMAL.inv_cdf(p), -Z_MAX, Z_MAX))


_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


def upper_z(p: FloatArray) -> FloatArray:
    """``z`` with ``P(N(0,1) > z) = p``, vectorised (Acklam's rational approximation, relative
    error < 1.2e-9), clipped to ``±Z_MAX``."""
    q = np.clip(np.asarray(p, np.float64), 1e-300, 1.0 - 1e-16)
    lo = np.minimum(q, 1.0 - q)  # tail probability on the near side
    t = np.sqrt(-2.0 * np.log(lo))
    tail = (((((_C[0] * t + _C[1]) * t + _C[2]) * t + _C[3]) * t + _C[4]) * t + _C[5]) / (
        (((_D[0] * t + _D[1]) * t + _D[2]) * t + _D[3]) * t + 1.0
    )
    r = (lo - 0.5) ** 2
    mid = (
        (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * (lo - 0.5)
    ) / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)
    x = np.where(lo < 0.02425, tail, mid)  # Φ⁻¹(lo) <= 0
    return np.asarray(np.clip(np.where(q <= 0.5, -x, x), -Z_MAX, Z_MAX))


def upper_z1(p: float) -> float:
    """:func:`upper_z` of one probability in plain Python (the window's few features: faster
    than a dozen numpy calls on a handful of values; agrees to a few ulps)."""
    q = min(max(p, 1e-300), 1.0 - 1e-16)
    lo = min(q, 1.0 - q)
    if lo < 0.02425:
        t = math.sqrt(-2.0 * math.log(lo))
        x = (((((_C[0] * t + _C[1]) * t + _C[2]) * t + _C[3]) * t + _C[4]) * t + _C[5]) / (
            (((_D[0] * t + _D[1]) * t + _D[2]) * t + _D[3]) * t + 1.0
        )
    else:
        r = (lo - 0.5) ** 2
        x = (
            (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * (lo - 0.5)
        ) / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)
    return min(max(-x if q <= 0.5 else x, -Z_MAX), Z_MAX)


def ks_lambda(base: IntArray | FloatArray, window: IntArray | FloatArray) -> FloatArray:
    """Kolmogorov's ``λ = D·√(nm/(n+m))`` of binned counts: ``window`` ``(K,)`` or ``(S, K)``
    against one baseline ``(K,)`` or one per row ``(S, K)``; −1 where either side is empty."""
    b = np.atleast_2d(np.asarray(base, np.float64))
    w = np.atleast_2d(np.asarray(window, np.float64))
    m, n = b.sum(axis=1), w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cw = np.cumsum(w, axis=1) / n[:, None]
        cb = np.cumsum(b, axis=1) / m[:, None]
        d = np.max(np.abs(cb - cw), axis=1)  # NaN only where a side is empty: masked below
        lam = d * np.sqrt(n * m / (n + m))
    return np.asarray(np.where((n > 0) & (m > 0), lam, -1.0))


def kolmogorov_z1(lam: float) -> float:
    """Kolmogorov's asymptotic tail at ``λ`` as a z-score (``-Z_MAX`` for ``λ < 0``: no test)."""
    if lam < 0.0:
        return -Z_MAX
    if lam < 0.3:
        return upper_z1(1.0)
    t = -2.0 * lam * lam
    p = 2.0 * (
        math.exp(t)
        - math.exp(4.0 * t)
        + math.exp(9.0 * t)
        - math.exp(16.0 * t)
        + math.exp(25.0 * t)
    )
    return upper_z1(p)


def ks_z(base: IntArray | FloatArray, window: IntArray | FloatArray) -> FloatArray:
    """Two-sample KS on binned counts as a z-score (shapes as :func:`ks_lambda`)."""
    lam = ks_lambda(base, window)
    k = np.arange(1, 6)[:, None]
    p = 2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k**2 * lam[None, :] ** 2), axis=0)
    p = np.where(lam < 0.3, 1.0, p)
    return np.asarray(np.where(lam >= 0.0, upper_z(p), -Z_MAX))


_ERFC = np.frompyfunc(math.erfc, 1, 1)
_SQRT2 = math.sqrt(2.0)


def rank_abs_z(base: IntArray | FloatArray, window: IntArray | FloatArray) -> FloatArray:
    """``|z|`` of the two-sample Wilcoxon–Mann–Whitney test on binned counts (shapes as
    :func:`ks_lambda`): the values of a bin are ties (mid-ranks, tie-corrected variance), as
    ``scipy.stats.mannwhitneyu(method="asymptotic", use_continuity=False)``; −1 where either side
    is empty or every value ties."""
    b = np.atleast_2d(np.asarray(base, np.float64))
    w = np.atleast_2d(np.asarray(window, np.float64))
    m, n = b.sum(axis=1), w.sum(axis=1)
    # U: for each window value, the baseline values below it (those of its own bin count half)
    u = np.sum(w * (np.cumsum(b, axis=1) - b / 2.0), axis=1)
    t = b + w
    big_n = m + n
    with np.errstate(divide="ignore", invalid="ignore"):
        ties = np.sum(t * t * t - t, axis=1) / (big_n * (big_n - 1.0))
        var = n * m / 12.0 * (big_n + 1.0 - ties)
        z = np.abs(u - n * m / 2.0) / np.sqrt(var)
    return np.asarray(np.where((n > 0) & (m > 0) & (var > 0), np.minimum(z, Z_MAX), -1.0))


def rank_z1(abs_z: float) -> float:
    """One :func:`rank_abs_z` as a two-sided z-score (``-Z_MAX`` for −1: no test)."""
    return -Z_MAX if abs_z < 0.0 else upper_z1(math.erfc(abs_z / _SQRT2))


def rank_z(base: IntArray | FloatArray, window: IntArray | FloatArray) -> FloatArray:
    """The two-sided rank test as a z-score (shapes as :func:`ks_lambda`). Ranks see a shift of
    location with nearly the power of a raw-value test, even on 10 bins."""
    z = rank_abs_z(base, window)
    p = np.asarray(_ERFC(np.maximum(z, 0.0) / _SQRT2), np.float64)  # two-sided tail probability
    return np.asarray(np.where(z >= 0.0, upper_z(p), -Z_MAX))


def chi2_homogeneity_rows(base: FloatArray, window: FloatArray) -> tuple[FloatArray, IntArray]:
    """:func:`chi2_homogeneity` with one baseline per row (both ``(S, K)``), each row's empty
    columns dropped: the χ² and the degrees of freedom of each row."""
    b = np.asarray(base, np.float64)
    w = np.asarray(window, np.float64)
    total = b + w
    kept = np.count_nonzero(total > 0, axis=1)
    m, n = b.sum(axis=1, keepdims=True), w.sum(axis=1, keepdims=True)
    grand = m + n
    with np.errstate(divide="ignore", invalid="ignore"):
        eb, ew = m * total / grand, n * total / grand
        x = np.where(total > 0, (b - eb) ** 2 / eb + (w - ew) ** 2 / ew, 0.0).sum(axis=1)
    ok = (kept >= 2) & (m[:, 0] > 0)
    x = np.where(ok & (n[:, 0] > 0), x, 0.0)
    return x, np.where(ok, kept - 1, 0).astype(np.int64)


# -- calibration --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FeatureCalibration:
    """One feature's thresholds: per-window evidence and CUSUM, both in z units."""

    z_threshold: float
    cusum_threshold: float
    oor_rate: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {
            "z_threshold": self.z_threshold,
            "cusum_threshold": self.cusum_threshold,
            "oor_rate": self.oor_rate,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureCalibration:
        return cls(float(d["z_threshold"]), float(d["cusum_threshold"]), float(d["oor_rate"]))


@dataclass(frozen=True, slots=True)
class Calibration:
    """How the thresholds were made, and each feature's."""

    target_rate: float
    window_rows: int
    draws: int
    features: Mapping[str, FeatureCalibration]
    cusum_k: float = CUSUM_K
    evidence: int = EVIDENCE_VERSION

    @property
    def current(self) -> bool:
        """Calibrated for the evidence this version computes (else: recalibrate)."""
        return self.evidence == EVIDENCE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "evidence": self.evidence,
            "target_rate": self.target_rate,
            "window_rows": self.window_rows,
            "draws": self.draws,
            "cusum_k": self.cusum_k,
            "features": {k: v.to_dict() for k, v in self.features.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        return cls(
            target_rate=float(d["target_rate"]),
            window_rows=int(d["window_rows"]),
            draws=int(d["draws"]),
            cusum_k=float(d.get("cusum_k", CUSUM_K)),
            evidence=int(d.get("evidence", 1)),
            features={str(k): FeatureCalibration.from_dict(v) for k, v in d["features"].items()},
        )


def check_rate(target_rate: float, window_rows: int) -> None:
    if not 0.0 < target_rate < 0.5 or window_rows < 1:
        raise ValueError(
            f"target_rate={target_rate} must be in (0, 0.5) and window_rows={window_rows} >= 1"
        )


def null_evidence(
    counts: IntArray,
    oor_rate: float,
    window_rows: int,
    draws: int,
    rng: np.random.Generator,
    *,
    ks: bool = False,
) -> tuple[FloatArray, FloatArray]:
    """(evidence z, CUSUM input z) of ``draws`` windows drawn under "no change" from the
    baseline's counts (the null bin last in ``counts``). The CUSUM takes the evidence without the
    rank test: the larger of two near-normal z's has a mean above the CUSUM's ``k``."""
    base = np.asarray(counts, np.int64)
    nz = base > 0
    if nz.sum() < 2:  # one populated bin: every null window is identical to the baseline
        z = np.zeros(draws)
        ranks = np.full(draws, -Z_MAX)
    else:
        p = rng.dirichlet(base[nz].astype(np.float64), size=draws)
        w = np.zeros((draws, base.size), np.int64)
        w[:, nz] = rng.multinomial(window_rows, p)
        x, dof = chi2_homogeneity(base, w)
        z = wilson_hilferty(x, dof)
        ranks = np.full(draws, -Z_MAX)
        if ks:
            z = np.maximum(z, ks_z(base[:-1], w[:, :-1]))
            ranks = rank_z(base[:-1], w[:, :-1])
    if oor_rate > 0.0:
        hits = rng.binomial(window_rows, oor_rate, size=draws)
        table = {int(h): binomial_sf_z(int(h), window_rows, oor_rate) for h in np.unique(hits)}
        z = np.maximum(z, np.vectorize(table.__getitem__, otypes=[np.float64])(hits))
    return np.maximum(z, ranks), np.asarray(z, np.float64)


def tail_quantile(z: FloatArray, rate: float) -> float:
    """The ``1 − rate`` quantile of ``z``; past what the draws resolve, the normal's shape from
    the 50th-largest draw."""
    s = np.sort(z)
    if rate * s.size >= _TAIL_DRAWS:
        return float(np.quantile(s, 1.0 - rate))
    q = _TAIL_DRAWS / s.size
    anchor = float(s[-_TAIL_DRAWS])
    return anchor + _NORMAL.inv_cdf(1.0 - rate) - _NORMAL.inv_cdf(1.0 - q)


def cusum_arl(z: FloatArray, h: float, k: float = CUSUM_K, cells: int = 64) -> float:
    """Average run length of ``S ← max(0, S + z − k)`` until ``S > h`` when the ``z`` are i.i.d.
    from the sample ``z`` (Brook–Evans Markov chain on ``cells`` cells of ``[0, h]``)."""
    s = np.sort(np.asarray(z, np.float64))
    delta = h / cells
    mid = (np.arange(cells) + 0.5) * delta
    upper = (np.arange(cells) + 1.0) * delta
    # P(next cell <= j | now in i) = F(upper_j - mid_i + k)
    cdf = np.searchsorted(s, upper[None, :] - mid[:, None] + k, side="right") / s.size
    trans = np.diff(np.concatenate([np.zeros((cells, 1)), cdf], axis=1), axis=1)
    try:
        arl = np.linalg.solve(np.eye(cells) - trans, np.ones(cells))
    except np.linalg.LinAlgError:
        return math.inf
    return float(arl[0]) if np.isfinite(arl[0]) and arl[0] > 0 else math.inf


def cusum_threshold(z: FloatArray, arl: float, k: float = CUSUM_K) -> float:
    """The smallest ``h`` (to 0.01) whose null average run length is at least ``arl`` windows."""
    lo, hi = 0.0, 4.0
    while cusum_arl(z, hi, k) < arl and hi < 400.0:
        lo, hi = hi, hi * 2.0
    while hi - lo > 0.01:
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if cusum_arl(z, mid, k) < arl else (lo, mid)
    return round(hi, 2)


def calibrate_feature(
    counts: IntArray,
    nulls: int,
    *,
    window_rows: int,
    target_rate: float,
    oor_rate: float = 0.0,
    ks: bool = False,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> FeatureCalibration:
    """Thresholds for one feature from its baseline counts (value bins) and nulls."""
    check_rate(target_rate, window_rows)
    rng = np.random.default_rng(seed)
    full = np.append(np.asarray(counts, np.int64), nulls)
    z, z_cusum = null_evidence(full, oor_rate, window_rows, draws, rng, ks=ks)
    if float(np.ptp(z)) == 0.0:  # a constant feature: any other value is off the charts anyway
        nominal = _NORMAL.inv_cdf(1.0 - target_rate / 2.0)
        return FeatureCalibration(round(nominal, 4), round(2.0 * nominal, 2), oor_rate)
    return FeatureCalibration(
        z_threshold=round(tail_quantile(z, target_rate / 2.0), 4),
        cusum_threshold=cusum_threshold(z_cusum, ARL_MARGIN * 2.0 / target_rate),
        oor_rate=oor_rate,
    )
