"""On-stream drift statistics against a baseline :class:`~etl.profile.Profile` (pure numpy/Arrow).

A :class:`DriftWindow` accumulates, per feature, counts in the baseline's own bins (numeric:
``numpy.searchsorted`` + ``numpy.bincount``; categorical: Arrow ``index_in`` against the baseline's
top-K, everything else in ``other``), nulls and values outside the baseline's ``[min, max]``. No
Python loop runs per record. ``result()`` turns the counts into statistics:

* **PSI** ``Σ (q−p)·ln(q/p)`` over the bins, where ``p``/``q`` are the baseline/window shares with
  every share floored at :data:`PSI_EPSILON` (1e-4) so that empty bins stay finite;
* **Jensen–Shannon distance**, base 2 (in ``[0, 1]``), on the unsmoothed shares: identical to
  ``scipy.spatial.distance.jensenshannon(p, q, base=2)`` on the same bins;
* **KS statistic** (numeric): ``max |F_p − F_q|`` over the binned CDFs — it equals the raw-sample
  KS statistic up to the bin resolution;
* **χ² p-value** (categorical): the 2×K contingency table (baseline counts, window counts), columns
  with no count dropped, Yates' correction when one degree of freedom is left — as
  ``scipy.stats.chi2_contingency`` computes it;
* **null-rate delta** (window − baseline) and **out-of-range share** (numeric: share of the
  window's non-null values outside the baseline's ``[min, max]``; categorical: share in ``other``,
  i.e. outside the baseline's top K).

Alarms do not use a fixed PSI line. Each feature's **evidence** (:mod:`etl.calibration`: a
two-sample χ² over the bins *and a null bin*, plus the out-of-range tail, on a z scale) is set
against the **threshold** calibrated at baseline build for the target false-alarm rate, and feeds a
**CUSUM** (:mod:`etl.cusum`) that adds small persistent shifts up across windows. A feature's
``score`` is ``max(evidence / threshold, cusum / cusum_threshold, 0)``: above 1 means drift at the
calibrated false-alarm rate. ``drift_score`` is the largest score among the monitored features
(a feature entirely null, or absent from the data, scores on its null bin: silence never hides
drift); ``max_psi`` keeps the effect size people know. A feature missing from the baseline is
reported with a status, never crashed on.

>>> import numpy as np
>>> from etl.contract import load_contract
>>> from etl.profile import build_profile
>>> rng = np.random.default_rng(1)
>>> base = {"amount": rng.normal(50, 10, 5000)}
>>> p = build_profile(base, load_contract(), features=["amount"], created_at="2026-01-01")
>>> w = DriftWindow(p)
>>> w.update({"amount": rng.normal(80, 10, 1000)})
1000
>>> r = w.result()
>>> r.drift_score > 1.0 and r.max_psi > 1.0
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from etl.calibration import (
    Calibration,
    FeatureCalibration,
    binomial_sf_z,
    chi2_homogeneity,
    ks_z,
    wilson_hilferty,
)
from etl.cusum import Cusum
from etl.profile import (
    CategoricalProfile,
    FloatArray,
    IntArray,
    NumericProfile,
    Profile,
    arrow_column,
    as_arrow,
    calibrate,
    categorical_counts,
    categorical_values,
    column_names,
    num_rows,
    numeric_counts,
    numeric_values,
)

#: Floor on every bin share before PSI (so ln(q/p) stays finite for empty bins).
PSI_EPSILON = 1e-4
#: Jensen–Shannon distance is computed in base 2, so it lies in [0, 1].
JS_BASE = 2.0
_NORMAL = NormalDist()

Status = Literal["ok", "empty", "missing_in_baseline", "missing_in_data"]


# -- statistics on binned counts (pure functions) ---------------------------------------------
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


# -- results --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """One feature's statistics for one window."""

    name: str
    kind: Literal["numeric", "categorical", "unknown"]
    status: Status
    rows: int = 0
    nulls: int = 0
    psi: float | None = None
    js_distance: float | None = None
    ks_statistic: float | None = None
    chi2_pvalue: float | None = None
    null_rate_delta: float | None = None
    out_of_range_share: float | None = None
    nonfinite: int = 0

    statistic: float | None = None
    dof: int | None = None
    evidence: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    cusum: float | None = None
    cusum_threshold: float | None = None
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class DriftResult:
    """A closed window's statistics; ``drift_score`` is the largest feature score (None when no
    feature was scored, or the window has fewer than ``min_rows`` rows), ``max_psi`` the largest
    PSI."""

    rows: int
    features: tuple[FeatureDrift, ...]
    baseline_version: str = ""
    contract_hash: str = ""
    drift_score: float | None = None
    missing: tuple[str, ...] = field(default=())
    max_psi: float | None = None
    min_rows: int = 0

    @property
    def too_small(self) -> bool:
        """Fewer rows than the window minimum: statistics shown, no score."""
        return self.rows < self.min_rows

    def feature(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "drift_score": self.drift_score,
            "max_psi": self.max_psi,
            "min_rows": self.min_rows,
            "baseline_version": self.baseline_version,
            "contract_hash": self.contract_hash,
            "missing": list(self.missing),
            "features": [f.to_dict() for f in self.features],
        }


# -- the window -----------------------------------------------------------------------------------
@dataclass
class _NumState:
    profile: NumericProfile
    edges: FloatArray
    counts: IntArray
    nulls: int = 0
    out_of_range: int = 0
    seen_batches: int = 0
    nonfinite: int = 0
    base: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    base_full: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        self.base = np.asarray(self.profile.counts, np.int64)
        self.base_full = np.append(self.base, self.profile.nulls)


@dataclass
class _CatState:
    profile: CategoricalProfile
    counts: IntArray
    nulls: int = 0
    seen_batches: int = 0
    value_set: Any = None  # pa.Array, rebuilt lazily after unpickling
    base: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    base_full: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        self.base = np.asarray(self.profile.counts, np.int64)
        self.base_full = np.append(self.base, self.profile.nulls)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "counts": self.counts,
            "nulls": self.nulls,
            "seen_batches": self.seen_batches,
            "value_set": None,
            "base": self.base,
            "base_full": self.base_full,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class DriftWindow:
    """Per-feature counts of the rows seen since the last close, in the baseline's bins, and each
    feature's CUSUM across closed windows.

    ``features`` names the features to monitor (e.g. the contract's); by default the baseline's.
    A name the baseline lacks is reported ``missing_in_baseline``; a monitored feature absent from
    a batch counts as null for that batch's rows (and is reported ``missing_in_data`` if it never
    appeared). ``result()`` reads the window (the CUSUM shown as it would be after it);
    ``close()`` takes the window into the CUSUMs and empties it. Windows pickle (counts and
    CUSUMs survive a lease handover) and ``reset()`` empties the counts only. A baseline without
    calibration (format 1) is calibrated here, at the default false-alarm rate.
    """

    def __init__(self, profile: Profile, features: Iterable[str] | None = None) -> None:
        self.profile = profile
        names = list(features) if features is not None else list(profile.features)
        self.features = tuple(dict.fromkeys(names))
        self.missing_in_baseline = tuple(n for n in self.features if n not in profile.features)
        cal = profile.calibration or calibrate(profile).calibration
        assert cal is not None
        self.calibration: Calibration = cal
        self.rows = 0
        self._num: dict[str, _NumState] = {}
        self._cat: dict[str, _CatState] = {}
        self.cusums: dict[str, Cusum] = {}
        for name in self.features:
            fp = profile.features.get(name)
            if isinstance(fp, NumericProfile):
                self._num[name] = _NumState(
                    fp, np.asarray(fp.edges, np.float64), np.zeros(len(fp.edges) + 1, np.int64)
                )
            elif isinstance(fp, CategoricalProfile):
                self._cat[name] = _CatState(fp, np.zeros(len(fp.categories) + 1, np.int64))
            fc = cal.features.get(name)
            if fc is not None:
                self.cusums[name] = Cusum(threshold=fc.cusum_threshold, k=cal.cusum_k)

    def reset(self) -> None:
        """Empty the window (the baseline, feature list and CUSUMs stay)."""
        self.rows = 0
        for ns in self._num.values():
            ns.counts[:] = 0
            ns.nulls = ns.out_of_range = ns.seen_batches = ns.nonfinite = 0
        for cs in self._cat.values():
            cs.counts[:] = 0
            cs.nulls = cs.seen_batches = 0

    def close(self, min_rows: int = 0) -> DriftResult:
        """The window's result, its evidence taken into the CUSUMs, then an empty window."""
        result = self.result(min_rows)
        if not result.too_small:
            for f in result.features:
                if f.evidence is not None and f.name in self.cusums:
                    self.cusums[f.name].update(f.evidence)
        self.reset()
        return result

    def update(self, data: Any) -> int:
        """Add a batch (Arrow Table/RecordBatch, DataFrame, mapping of arrays); returns its rows."""
        data = as_arrow(data)
        n = num_rows(data)
        if n == 0:
            return 0
        present = set(column_names(data))
        for name, ns in self._num.items():
            if name not in present:
                ns.nulls += n
                continue
            values = numeric_values(arrow_column(data, name))
            counts, nulls = numeric_counts(values, ns.edges)
            ns.counts += counts
            ns.nulls += nulls
            ns.seen_batches += 1
            inf = int(np.count_nonzero(np.isinf(values))) if nulls else 0
            ns.nonfinite += inf
            lo, hi = ns.profile.min, ns.profile.max
            if lo is not None and hi is not None:
                with np.errstate(invalid="ignore"):
                    outside = np.count_nonzero((values < lo) | (values > hi))
                ns.out_of_range += int(outside) - inf
        for name, cs in self._cat.items():
            if name not in present:
                cs.nulls += n
                continue
            if cs.value_set is None:
                cs.value_set = pa.array(list(cs.profile.categories), pa.string())
            counts, nulls = categorical_counts(
                categorical_values(arrow_column(data, name)), cs.value_set
            )
            cs.counts += counts
            cs.nulls += nulls
            cs.seen_batches += 1
        self.rows += n
        return n

    def result(self, min_rows: int = 0) -> DriftResult:
        """The window's statistics; with fewer than ``min_rows`` rows, no ``drift_score``."""
        out: list[FeatureDrift] = []
        missing: list[str] = []
        for name in self.features:
            if name in self._num:
                out.append(self._numeric_result(name, self._num[name]))
            elif name in self._cat:
                out.append(self._categorical_result(name, self._cat[name]))
            else:
                out.append(FeatureDrift(name=name, kind="unknown", status="missing_in_baseline"))
            if out[-1].status in ("missing_in_baseline", "missing_in_data"):
                missing.append(name)
        scores = [f.score for f in out if f.score is not None]
        psis = [f.psi for f in out if f.psi is not None and math.isfinite(f.psi)]
        return DriftResult(
            rows=self.rows,
            features=tuple(out),
            baseline_version=self.profile.version,
            contract_hash=self.profile.contract_hash,
            drift_score=max(scores) if scores and self.rows >= min_rows else None,
            missing=tuple(missing),
            max_psi=max(psis) if psis else None,
            min_rows=min_rows,
        )

    def _null_delta(self, nulls: int, base_nulls: int, base_n: int) -> float | None:
        if self.rows == 0 or base_n == 0:
            return None
        return nulls / self.rows - base_nulls / base_n

    def _numeric_result(self, name: str, ns: _NumState) -> FeatureDrift:
        f = self._common_fields(name, ns)
        nonnull = int(ns.counts.sum())
        f["nonfinite"] = ns.nonfinite
        if nonnull:
            f["out_of_range_share"] = ns.out_of_range / nonnull
        self._evidence(f, ns.counts, ns.nulls, ns.out_of_range, nonnull)
        if f["status"] == "ok":
            f["ks_statistic"] = ks_statistic(ns.base, ns.counts)
        return FeatureDrift(kind="numeric", **f)

    def _categorical_result(self, name: str, cs: _CatState) -> FeatureDrift:
        f = self._common_fields(name, cs)
        nonnull = int(cs.counts.sum())
        if nonnull:
            f["out_of_range_share"] = int(cs.counts[-1]) / nonnull
        self._evidence(f, cs.counts, cs.nulls, 0, nonnull)
        if f["status"] == "ok":
            f["chi2_pvalue"] = chi2_pvalue(cs.base, cs.counts)
        return FeatureDrift(kind="categorical", **f)

    def _evidence(
        self, f: dict[str, Any], counts: IntArray, nulls: int, outside: int, nonnull: int
    ) -> None:
        """Evidence, calibrated threshold, CUSUM and score of one feature (values + nulls)."""
        name = f["name"]
        fc: FeatureCalibration | None = self.calibration.features.get(name)
        st = self._num.get(name) or self._cat.get(name)
        if fc is None or st is None or self.rows == 0:
            return
        x, dof = chi2_homogeneity(st.base_full, np.append(counts, nulls))
        z = float(wilson_hilferty(x, dof)[0])
        if isinstance(st, _NumState) and nonnull:
            z = max(z, float(ks_z(st.base, counts)[0]))
        if fc.oor_rate > 0.0 and nonnull:
            z = max(z, binomial_sf_z(outside, nonnull, fc.oor_rate))
        cusum = self.cusums[name].peek(z)
        f.update(
            statistic=float(x[0]),
            dof=dof,
            evidence=z,
            p_value=_NORMAL.cdf(-z),
            threshold=fc.z_threshold,
            cusum=cusum,
            cusum_threshold=fc.cusum_threshold,
            score=max(0.0, z / fc.z_threshold, cusum / fc.cusum_threshold),
        )

    def _common_fields(self, name: str, st: _NumState | _CatState) -> dict[str, Any]:
        """What both kinds share: missing/empty status, null-rate delta, PSI and JS distance."""
        fp = st.profile
        f: dict[str, Any] = {
            "name": name,
            "status": "empty",
            "rows": self.rows,
            "nulls": st.nulls,
            "null_rate_delta": self._null_delta(st.nulls, fp.nulls, fp.n),
        }
        if st.seen_batches == 0 and self.rows > 0:
            f["status"] = "missing_in_data"
        elif st.counts.any() and st.base.any():
            f.update(
                status="ok",
                psi=psi(st.base, st.counts),
                js_distance=js_distance(st.base, st.counts),
            )
        return f

    def counts(self, name: str) -> IntArray:
        """The window's counts for one feature (bins, or categories then ``other``)."""
        if name in self._num:
            return self._num[name].counts.copy()
        return self._cat[name].counts.copy()


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    """When a drift window closes: at least ``window_s`` old AND at least ``min_rows`` rows.

    A window that is old enough but too small extends until enough rows arrive. Pure: the caller
    passes the clock's readings.
    """

    window_s: float = 60.0
    min_rows: int = 500

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.min_rows < 1:
            raise ValueError(
                f"window_s={self.window_s} must be > 0 and min_rows={self.min_rows} >= 1"
            )

    def should_close(self, now: float, opened_at: float, rows: int) -> bool:
        return (now - opened_at) >= self.window_s and rows >= self.min_rows


def check(
    data: Any,
    profile: Profile,
    *,
    features: Iterable[str] | None = None,
    chunk_rows: int = 1_000_000,
    min_rows: int = 0,
) -> DriftResult:
    """Statistics of a whole dataset against a baseline, with the on-stream window's code: one
    window (its CUSUM is one step); no ``drift_score`` below ``min_rows`` rows."""
    window = DriftWindow(profile, features)
    if isinstance(data, pa.Table) and data.num_rows > chunk_rows:
        for batch in data.to_batches(max_chunksize=chunk_rows):
            window.update(batch)
    else:
        window.update(data)
    return window.result(min_rows)
