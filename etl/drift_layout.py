"""The baseline as a drift window reads it, laid out once when the window opens (pure numpy):
one row per scored feature, value bins padded to a common width with the null bin last, the
numeric features' ``searchsorted`` grids and the categories' lookup, and each feature's
calibrated thresholds."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from etl.calibration import Calibration
from etl.drift_stats import PSI_EPSILON, row_shares
from etl.profile import CategoricalProfile, FloatArray, NumericProfile, Profile

BoolArray = npt.NDArray[np.bool_]


@dataclass(eq=False)
class Layout:
    """The baseline as the window reads it, laid out once when the window opens: one row per
    scored feature (numeric or categorical), value bins padded to a common width, nulls last."""

    names: tuple[str, ...]
    numeric: BoolArray
    widths: tuple[int, ...]
    #: numeric: the searchsorted grid (``[min, *edges, nextafter(max)]`` when the range brackets
    #: the edges, so one pass also counts values outside the range; else the edges)
    grids: tuple[FloatArray | None, ...]
    ranged: tuple[bool, ...]
    ranges: tuple[tuple[float, float] | None, ...]
    categories: tuple[dict[str, int], ...]  # categorical: value → its bin (others: the last)
    numeric_rows: tuple[int, ...]  # numeric features whose baseline has values
    categorical_rows: tuple[int, ...]
    full: FloatArray  # (F, width + 1) baseline counts, nulls last
    shares: FloatArray  # (F, width) the value bins' shares ...
    floored: FloatArray  # ... floored at PSI_EPSILON (for PSI) ...
    cdf: FloatArray  # ... and cumulated (for KS)
    rows: tuple[int, ...]
    null_counts: tuple[int, ...]
    calibrated: tuple[bool, ...]
    z_threshold: tuple[float, ...]
    cusum_threshold: tuple[float, ...]
    oor_rate: tuple[float, ...]

    @classmethod
    def of(cls, profile: Profile, names: Iterable[str], cal: Calibration) -> Layout:
        feats = [(n, profile.features[n]) for n in names if n in profile.features]
        widths = tuple(len(fp.counts) for _, fp in feats)
        full = np.zeros((len(feats), max(widths, default=0) + 1), np.float64)
        grids: list[FloatArray | None] = []
        ranged: list[bool] = []
        ranges: list[tuple[float, float] | None] = []
        for j, (_, fp) in enumerate(feats):
            full[j, : widths[j]] = fp.counts
            full[j, -1] = fp.nulls
            grid, in_range, rng = _numeric_grid(fp) if isinstance(fp, NumericProfile) else _NONE
            grids.append(grid)
            ranged.append(in_range)
            ranges.append(rng)
        fcs = [cal.features.get(n) for n, _ in feats]
        shares = row_shares(full[:, :-1])
        return cls(
            names=tuple(n for n, _ in feats),
            numeric=np.array([isinstance(fp, NumericProfile) for _, fp in feats], np.bool_),
            widths=widths,
            grids=tuple(grids),
            ranged=tuple(ranged),
            ranges=tuple(ranges),
            categories=tuple(
                {c: i for i, c in enumerate(fp.categories)}
                if isinstance(fp, CategoricalProfile)
                else {}
                for _, fp in feats
            ),
            numeric_rows=tuple(
                j for j, (_, fp) in enumerate(feats) if isinstance(fp, NumericProfile) and fp.count
            ),
            categorical_rows=tuple(
                j for j, (_, fp) in enumerate(feats) if isinstance(fp, CategoricalProfile)
            ),
            full=full,
            shares=shares,
            floored=np.maximum(shares, PSI_EPSILON),
            cdf=np.cumsum(shares, axis=1),
            rows=tuple(fp.n for _, fp in feats),
            null_counts=tuple(fp.nulls for _, fp in feats),
            calibrated=tuple(fc is not None for fc in fcs),
            z_threshold=tuple(fc.z_threshold if fc else math.nan for fc in fcs),
            cusum_threshold=tuple(fc.cusum_threshold if fc else math.nan for fc in fcs),
            oor_rate=tuple(fc.oor_rate if fc else 0.0 for fc in fcs),
        )


_NONE: tuple[None, bool, None] = (None, False, None)


def _numeric_grid(fp: NumericProfile) -> tuple[FloatArray, bool, tuple[float, float] | None]:
    edges = np.asarray(fp.edges, np.float64)
    if fp.min is None or fp.max is None:
        return edges, False, None
    lo, hi = fp.min, fp.max
    top = float(np.nextafter(hi, np.inf))
    if edges.size and not (lo <= edges[0] and edges[-1] <= top):
        return edges, False, (lo, hi)  # edges of another profile's data: count the range apart
    return np.concatenate([[lo], edges, [top]]), True, (lo, hi)
