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
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.calibration import (
    Calibration,
    binomial_sf_z,
    chi2_homogeneity_rows,
    kolmogorov_z1,
    ks_lambda,
    rank_abs_z,
    rank_z1,
    wilson_hilferty,
)
from etl.cusum import Cusum
from etl.drift_layout import Layout
from etl.drift_result import MISSING, DriftResult, FeatureDrift, Status
from etl.drift_stats import (
    JS_BASE,
    PSI_EPSILON,
    chi2_pvalue,
    chi2_rows,
    chi2_sf,
    js_distance,
    js_of_shares,
    ks_statistic,
    psi,
    psi_of_floored,
    row_shares,
    shares,
)
from etl.profile import (
    FloatArray,
    IntArray,
    Profile,
    arrow_column,
    as_arrow,
    calibrate,
    categorical_counts,
    categorical_values,
    column_names,
    num_rows,
    numeric_values,
)

__all__ = [
    "JS_BASE",
    "PSI_EPSILON",
    "DriftResult",
    "DriftWindow",
    "FeatureDrift",
    "Status",
    "WindowPolicy",
    "check",
    "chi2_pvalue",
    "chi2_sf",
    "js_distance",
    "ks_statistic",
    "psi",
    "shares",
]

_SQRT2 = math.sqrt(2.0)
#: A categorical batch with more distinct values than this is mapped by Arrow, not a dict.
_MAX_LOOKUPS = 256


# -- the window -----------------------------------------------------------------------------------
@dataclass(slots=True)
class _Scores:
    """Every feature's statistics for one window, computed together (one entry per layout row)."""

    psi: list[float]
    js: list[float]
    ks: list[float]
    chi2: list[float]  # categorical: the value bins' χ² (Yates at one dof) ...
    chi2_dof: list[int]  # ... and its degrees of freedom
    statistic: list[float]  # the evidence's χ² over value bins and the null bin ...
    dof: list[int]  # ... and its degrees of freedom
    evidence: list[float]
    cusum_input: list[float]


class DriftWindow:
    """Per-feature counts of the rows seen since the last close, in the baseline's bins, and each
    feature's CUSUM across closed windows.

    ``features`` names the features to monitor (e.g. the contract's); by default the baseline's.
    A name the baseline lacks is reported ``missing_in_baseline``; a monitored feature absent from
    a batch counts as null for that batch's rows (and is reported ``missing_in_data`` if it never
    appeared). ``result()`` reads the window (the CUSUM shown as it would be after it);
    ``close()`` takes the window into the CUSUMs and empties it. Windows pickle (counts and
    CUSUMs survive a lease handover) and ``reset()`` empties the counts only. A baseline without
    calibration (format 1), or calibrated for an older evidence, is calibrated here.

    All features' counts live in one ``(features, bins + 1)`` array (nulls last), so closing a
    window computes every statistic of every feature in one pass of numpy.
    """

    def __init__(self, profile: Profile, features: Iterable[str] | None = None) -> None:
        self.profile = profile
        names = list(features) if features is not None else list(profile.features)
        self.features = tuple(dict.fromkeys(names))
        self.missing_in_baseline = tuple(n for n in self.features if n not in profile.features)
        cal = profile.calibration
        if cal is None:
            cal = calibrate(profile).calibration
        elif not cal.current:
            cal = calibrate(
                profile, target_rate=cal.target_rate, window_rows=cal.window_rows
            ).calibration
        assert cal is not None
        self.calibration: Calibration = cal
        self._lay = Layout.of(profile, self.features, cal)
        self._index = {n: j for j, n in enumerate(self._lay.names)}
        f = len(self._lay.names)
        self._counts = np.zeros((f, self._lay.full.shape[1]), np.int64)
        self._oor = np.zeros(f, np.int64)
        self._nonfinite = np.zeros(f, np.int64)
        self._seen = np.zeros(f, np.int64)
        self.rows = 0
        self.cusums = {
            n: Cusum(threshold=fc.cusum_threshold, k=cal.cusum_k)
            for n in self.features
            if (fc := cal.features.get(n)) is not None and n in self._index
        }

    def reset(self) -> None:
        """Empty the window (the baseline, feature list and CUSUMs stay)."""
        self.rows = 0
        self._counts.fill(0)
        self._oor.fill(0)
        self._nonfinite.fill(0)
        self._seen.fill(0)

    def close(self, min_rows: int = 0) -> DriftResult:
        """The window's result, its evidence taken into the CUSUMs, then an empty window."""
        result, scores = self._result(min_rows)
        if scores is not None and not result.too_small:
            for j, name in enumerate(self._lay.names):
                if name in self.cusums and not math.isnan(scores.cusum_input[j]):
                    self.cusums[name].update(scores.cusum_input[j])
        self.reset()
        return result

    def update(self, data: Any) -> int:
        """Add a batch (Arrow Table/RecordBatch, DataFrame, mapping of arrays); returns its rows."""
        data = as_arrow(data)
        n = num_rows(data)
        if n == 0:
            return 0
        present = set(column_names(data))
        for j, name in enumerate(self._lay.names):
            if name not in present:
                self._counts[j, -1] += n
                continue
            col = arrow_column(data, name)
            if self._lay.grids[j] is not None:
                self._add_numeric(j, numeric_values(col))
            else:
                self._add_categorical(j, col)
            self._seen[j] += 1
        self.rows += n
        return n

    def _add_numeric(self, j: int, values: FloatArray) -> None:
        lay, row = self._lay, self._counts[j]
        finite = np.isfinite(values)
        nulls = values.size - int(np.count_nonzero(finite))
        valid = values[finite] if nulls else values
        if nulls:
            row[-1] += nulls
            self._nonfinite[j] += int(np.count_nonzero(np.isinf(values)))
        k, grid = lay.widths[j], lay.grids[j]
        assert grid is not None
        idx = np.searchsorted(grid, valid, side="right")
        if not lay.ranged[j]:
            row[:k] += np.bincount(idx, minlength=k)
            rng = lay.ranges[j]
            if rng is not None and valid.size:
                lo, hi = rng
                self._oor[j] += np.count_nonzero(valid < lo) + np.count_nonzero(valid > hi)
            return
        # grid = [min, *edges, nextafter(max)]: slot 0 is below the range, k + 1 above it
        c = np.bincount(idx, minlength=k + 2)
        row[:k] += c[1 : k + 1]
        below, above = int(c[0]), int(c[k + 1])
        if below or above:
            row[0] += below
            row[k - 1] += above
            self._oor[j] += below + above

    def _add_categorical(self, j: int, col: pa.Array | pa.ChunkedArray) -> None:
        # one hash pass over the batch (value_counts), then a dict lookup per distinct value:
        # twice as fast as index_in, which rebuilds its hash table of the categories every call
        vc = pc.value_counts(categorical_values(col))
        index, row = self._lay.categories[j], self._counts[j]
        other = self._lay.widths[j] - 1
        if len(vc) > _MAX_LOOKUPS:  # many distinct values: let Arrow map them all
            value_set = pa.array(list(index), pa.string())
            counts, nulls = categorical_counts(categorical_values(col), value_set)
            row[: other + 1] += counts
            row[-1] += nulls
            return
        values, counts_ = vc.field("values").to_pylist(), vc.field("counts").to_pylist()
        for value, count in zip(values, counts_, strict=True):
            row[-1 if value is None else index.get(value, other)] += count

    def result(self, min_rows: int = 0) -> DriftResult:
        """The window's statistics; with fewer than ``min_rows`` rows, no ``drift_score``."""
        return self._result(min_rows)[0]

    def _scores(self) -> _Scores:
        """Every statistic of every feature at once: the bins of all features in one pass of
        numpy, then per feature only the scalar tails (a handful of features: plain Python beats
        a dozen numpy calls on five values)."""
        lay = self._lay
        win = self._counts.astype(np.float64)
        base, val, bval = lay.full, win[:, :-1], lay.full[:, :-1]
        nonnull = self._counts[:, :-1].sum(axis=1)
        x, dof = chi2_homogeneity_rows(base, win)
        z = wilson_hilferty(x, dof).tolist()
        evidence = list(z)
        num = [j for j in lay.numeric_rows if nonnull[j]]
        if num:
            lam = ks_lambda(bval[num], val[num]).tolist()
            ranks = rank_abs_z(bval[num], val[num]).tolist()
            for i, j in enumerate(num):
                zj = max(z[j], kolmogorov_z1(lam[i]))
                rate = lay.oor_rate[j]
                if rate > 0.0:
                    zj = max(zj, binomial_sf_z(int(self._oor[j]), int(nonnull[j]), rate))
                z[j] = zj
                evidence[j] = max(zj, rank_z1(ranks[i]))
        chi2, chi2_dof = [math.nan] * len(lay.names), [0] * len(lay.names)
        if lay.categorical_rows:
            cat = list(lay.categorical_rows)
            cx, cd = chi2_rows(bval[cat], val[cat])
            for i, j in enumerate(cat):
                chi2[j], chi2_dof[j] = float(cx[i]), int(cd[i])
        q = row_shares(val)
        return _Scores(
            psi=psi_of_floored(lay.floored, np.maximum(q, PSI_EPSILON)).tolist(),
            js=js_of_shares(lay.shares, q).tolist(),
            ks=np.max(np.abs(lay.cdf - np.cumsum(q, axis=1)), axis=1).tolist(),
            chi2=chi2,
            chi2_dof=chi2_dof,
            statistic=x.tolist(),
            dof=dof.tolist(),
            evidence=evidence,
            cusum_input=z,
        )

    def _result(self, min_rows: int) -> tuple[DriftResult, _Scores | None]:
        scores = self._scores() if self.rows and self._lay.names else None
        out: list[FeatureDrift] = []
        for name in self.features:
            j = self._index.get(name)
            if j is None:
                out.append(FeatureDrift(name, "unknown", Status.MISSING_IN_BASELINE))
            else:
                out.append(self._feature(j, scores))
        scored = [f.score for f in out if f.score is not None]
        psis = [f.psi for f in out if f.psi is not None and math.isfinite(f.psi)]
        result = DriftResult(
            rows=self.rows,
            features=tuple(out),
            baseline_version=self.profile.version,
            contract_hash=self.profile.contract_hash,
            drift_score=max(scored) if scored and self.rows >= min_rows else None,
            missing=tuple(f.name for f in out if f.status in MISSING),
            max_psi=max(psis) if psis else None,
            min_rows=min_rows,
        )
        return result, scores

    def _feature(self, j: int, s: _Scores | None) -> FeatureDrift:
        """One feature's result from the window's counts and the scores of all features."""
        lay, name, rows = self._lay, self._lay.names[j], self.rows
        kind: Literal["numeric", "categorical"] = "numeric" if lay.numeric[j] else "categorical"
        if s is None:  # an empty window
            return FeatureDrift(name, kind, Status.EMPTY)
        nulls = int(self._counts[j, -1])
        nonnull = int(self._counts[j, :-1].sum())
        base_n = lay.rows[j]
        status = Status.EMPTY
        if self._seen[j] == 0:
            status = Status.MISSING_IN_DATA
        elif nonnull and base_n - lay.null_counts[j]:
            status = Status.OK
        ok = status is Status.OK
        oor = None
        if nonnull:
            outside = self._oor[j] if kind == "numeric" else self._counts[j, lay.widths[j] - 1]
            oor = int(outside) / nonnull
        fields: dict[str, Any] = {}
        if lay.calibrated[j]:
            z, threshold, cusum_threshold = (
                s.evidence[j],
                lay.z_threshold[j],
                lay.cusum_threshold[j],
            )
            cusum = self.cusums[name].peek(s.cusum_input[j])
            fields = {
                "statistic": s.statistic[j],
                "dof": s.dof[j],
                "evidence": z,
                "p_value": 0.5 * math.erfc(z / _SQRT2),  # NormalDist().cdf(-z), without the object
                "threshold": threshold,
                "cusum": cusum,
                "cusum_threshold": cusum_threshold,
                "score": max(0.0, z / threshold, cusum / cusum_threshold),
            }
        return FeatureDrift(
            name=name,
            kind=kind,
            status=status,
            rows=rows,
            nulls=nulls,
            psi=s.psi[j] if ok else None,
            js_distance=s.js[j] if ok else None,
            ks_statistic=s.ks[j] if ok and kind == "numeric" else None,
            chi2_pvalue=chi2_sf(s.chi2[j], s.chi2_dof[j]) if ok and kind != "numeric" else None,
            null_rate_delta=nulls / rows - lay.null_counts[j] / base_n if base_n else None,
            out_of_range_share=oor,
            nonfinite=int(self._nonfinite[j]),
            **fields,
        )

    def counts(self, name: str) -> IntArray:
        """The window's counts for one feature (bins, or categories then ``other``)."""
        j = self._index[name]
        return self._counts[j, : self._lay.widths[j]].copy()


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
