"""Bins that follow the data: exact-value bins for point masses and low-cardinality numerics,
quantile bins for the rest (pure numpy).

Quantile edges alone cannot see a feature with a dominant value: duplicate quantiles collapse, a
0/1 flag gets a single bin and every statistic on it is 0 for ever. So:

* **discrete** (at most :data:`MAX_EXACT_VALUES` distinct values, each seen
  :data:`MIN_ROWS_PER_VALUE` times on average): every value ``v`` gets its own bin
  ``[v, nextafter(v))``; the gaps between values and both tails are bins of their own, empty in
  the baseline, so a value the baseline never held lands in an empty bin;
* **point masses** (a value holding ≥ ``1 / (2 · bins)`` of the rows): an exact bin each, and
  quantile bins over the remaining values;
* the rest: interior edges at the data's quantiles, duplicates dropped, none at or below the
  minimum (so the lowest bin holds the minimum).

Edges stay plain floats, so a profile built with these edges merges with another built with
``edges_from`` exactly as before.

>>> data_edges(np.array([0.0] * 95 + [1.0] * 5), bins=10)
((0.0, 5e-324, 1.0, 1.0000000000000002), True)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: A numeric feature with at most this many distinct values gets one bin per value.
MAX_EXACT_VALUES = 32
#: ... provided each value is seen this often on average (a tiny sample of a continuous feature
#: is not discrete).
MIN_ROWS_PER_VALUE = 5


def exact_edges(values: FloatArray) -> list[float]:
    """``[v, nextafter(v, +inf)]`` for each value: a bin holding exactly ``v``."""
    out: list[float] = []
    for v in np.unique(values):
        out += [float(v), float(np.nextafter(v, np.inf))]
    return sorted(set(out))


def quantile_edges(values: FloatArray, bins: int) -> tuple[float, ...]:
    """Interior edges at the data's quantiles, duplicates dropped (discrete data: fewer bins)."""
    if values.size == 0 or bins <= 1:
        return ()
    qs = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = np.unique(qs)
    # An edge at the minimum would leave the lowest bin empty forever: drop it.
    edges = edges[edges > values.min()]
    return tuple(float(e) for e in edges)


def data_edges(valid: FloatArray, bins: int) -> tuple[tuple[float, ...], bool]:
    """(interior edges, discrete?) for the finite values ``valid`` of one feature."""
    if valid.size == 0:
        return (), False
    uniq, counts = np.unique(valid, return_counts=True)
    if uniq.size <= MAX_EXACT_VALUES and valid.size >= MIN_ROWS_PER_VALUE * uniq.size:
        return tuple(exact_edges(uniq)), True
    masses = uniq[counts >= valid.size / (2.0 * max(bins, 1))]
    if masses.size == 0:
        return quantile_edges(valid, bins), False
    rest = valid[~np.isin(valid, masses)]
    edges = set(exact_edges(masses)) | set(quantile_edges(rest, bins))
    return tuple(sorted(edges)), False
