"""Exact, incremental, mergeable ROC AUC: two sorted score arrays and twice the Mann-Whitney U.

ROC AUC equals the probability that a positive scores above a negative, ties counting one half:
``AUC = U / (P * N)`` with ``U = #{(p, n): p > n} + #{(p, n): p == n} / 2`` — what scikit-learn's
trapezoid under the ROC curve computes. Keeping ``2U`` (an integer, so exact) and both classes'
scores sorted lets a batch of ``b`` new scores update it in ``O(b log n)`` comparisons plus one
``O(n)`` insertion, instead of re-ranking the whole window; two states merge exactly (a window
split across shards, or a window rebuilt after a lease handover) and a pair can be taken out
exactly (a label that changed: last one wins).

>>> import numpy as np
>>> r = RankState()
>>> r.add(np.array([0.9, 0.4]), np.array([True, False]))
>>> r.add(np.array([0.4, 0.1]), np.array([True, False]))
>>> r.auc()                          # pairs: 0.9>0.4, 0.9>0.1, 0.4=0.4 (1/2), 0.4>0.1 -> 3.5/4
0.875
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def pairs2(pos: FloatArray, neg_sorted: FloatArray) -> int:
    """``2 * #{p > n} + #{p == n}`` over all pairs (p in ``pos``, n in ``neg_sorted``).

    ``pos`` may be in any order; ``neg_sorted`` must be ascending.
    """
    if pos.size == 0 or neg_sorted.size == 0:
        return 0
    below = np.searchsorted(neg_sorted, pos, side="left")  # n < p
    upto = np.searchsorted(neg_sorted, pos, side="right")  # n <= p
    return int(below.sum(dtype=np.int64) + upto.sum(dtype=np.int64))


def _insert_sorted(base: FloatArray, new_sorted: FloatArray) -> FloatArray:
    if new_sorted.size == 0:
        return base
    if base.size == 0:
        return new_sorted.copy()
    return np.insert(base, np.searchsorted(base, new_sorted, side="right"), new_sorted)


def _delete_sorted(base: FloatArray, gone_sorted: FloatArray) -> FloatArray:
    """``base`` without one occurrence of each value of ``gone_sorted`` (all must be present)."""
    if gone_sorted.size == 0:
        return base
    values, counts = np.unique(gone_sorted, return_counts=True)
    left = np.searchsorted(base, values, side="left")
    right = np.searchsorted(base, values, side="right")
    if np.any(right - left < counts):
        missing = values[right - left < counts][:3].tolist()
        raise ValueError(f"cannot remove scores {missing}: they are not in the window")
    # the first `count` positions of each run of equal values go
    idx = np.repeat(left, counts) + (
        np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    return np.delete(base, idx)


class RankState:
    """Both classes' scores, sorted, and ``2U``: an exact ROC AUC that updates by batch."""

    __slots__ = ("neg", "pos", "u2")

    def __init__(self) -> None:
        self.pos: FloatArray = np.empty(0, np.float64)
        self.neg: FloatArray = np.empty(0, np.float64)
        self.u2 = 0

    def add(self, scores: FloatArray, positive: BoolArray) -> None:
        """Add labelled scores (``positive[i]`` is the label of ``scores[i]``)."""
        bpos = np.sort(scores[positive])
        bneg = np.sort(scores[~positive])
        # new positives against old negatives, old positives against new negatives, new vs new
        cross = pairs2(bpos, self.neg) + self._above2(self.pos, bneg) + pairs2(bpos, bneg)
        self.u2 += cross
        self.pos = _insert_sorted(self.pos, bpos)
        self.neg = _insert_sorted(self.neg, bneg)

    def remove(self, scores: FloatArray, positive: BoolArray) -> None:
        """Take labelled scores out again (each must have been added): ``add``'s exact inverse."""
        gpos = np.sort(scores[positive])
        gneg = np.sort(scores[~positive])
        self.pos = _delete_sorted(self.pos, gpos)
        self.neg = _delete_sorted(self.neg, gneg)
        self.u2 -= pairs2(gpos, self.neg) + self._above2(self.pos, gneg) + pairs2(gpos, gneg)

    def merge(self, other: RankState) -> None:
        """Fold ``other`` in: the result is the state of both windows' pairs together."""
        self.u2 += other.u2 + pairs2(other.pos, self.neg) + pairs2(self.pos, other.neg)
        self.pos = _insert_sorted(self.pos, other.pos)
        self.neg = _insert_sorted(self.neg, other.neg)

    @staticmethod
    def _above2(pos_sorted: FloatArray, neg: FloatArray) -> int:
        """``pairs2`` with the sorted side being the positives: ``2 * #{p > n} + #{p == n}``."""
        if pos_sorted.size == 0 or neg.size == 0:
            return 0
        left = np.searchsorted(pos_sorted, neg, side="left")  # p < n
        right = np.searchsorted(pos_sorted, neg, side="right")  # p <= n
        total = 2 * pos_sorted.size * neg.size
        return int(total - left.sum(dtype=np.int64) - right.sum(dtype=np.int64))

    def auc(self) -> float | None:
        """ROC AUC, or ``None`` while one class is absent (undefined; scikit-learn raises)."""
        if self.pos.size == 0 or self.neg.size == 0:
            return None
        return self.u2 / (2 * self.pos.size * self.neg.size)
