"""Model quality over a window of label arrival: pure, incremental and mergeable.

A window holds the labelled predictions whose label arrived while it was open (the join of
captured predictions with their labels feeds it) and gives, at any moment and in time that does
not grow with the window's past batches:

* binary classification: ROC AUC, precision and recall at the serving threshold (a prediction is
  positive when ``score >= threshold``, as the inference module labels it), log loss, expected
  calibration error (ten equal-width bins, scikit-learn's ``calibration_curve`` binning);
* regression: MAE and RMSE;
* both: how many labels arrived, label coverage (labels joined / predictions captured in the
  window), how many labels replaced an earlier one, and label delay percentiles (label time minus
  prediction time, seconds).

Every figure is exact (the state keeps what the figure needs, not a sketch): the unit tests hold
them to scikit-learn's on the same rows — counts identically, sums to 1e-12 relative, see
``docs/quality.md``. Windows merge (a window split across shards) and take rows out exactly (a
label that changed is removed and the new one added: last one wins).

>>> import numpy as np
>>> w = ClassificationWindow(threshold=0.5)
>>> w.observe_predictions(5)
>>> w.update([0.9, 0.8, 0.3, 0.2], [1, 0, 1, 0], delays_s=[1.0, 2.0, 3.0, 4.0])
4
>>> f = w.figures()
>>> f.auc, f.precision, f.recall, f.label_coverage, f.delay_p50_s
(0.75, 0.5, 0.5, 0.8, 2.5)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from etl.exceptions import QualityError
from etl.quality_rank import FloatArray, RankState, _delete_sorted, _insert_sorted

#: The inference module's default serving threshold for binary classifiers.
DEFAULT_THRESHOLD = 0.5
#: Expected calibration error bins (equal width on [0, 1]).
ECE_BINS = 10
#: Label delay percentiles reported (numpy's default linear interpolation).
DELAY_PERCENTILES = (50.0, 90.0, 99.0)
#: Log loss clips probabilities to [eps, 1 - eps] like scikit-learn (float64's machine epsilon).
_EPS = float(np.finfo(np.float64).eps)


class QualityMetric(StrEnum):
    """The figures a window publishes, by their CloudWatch metric name."""

    AUC = "QualityAUC"
    PRECISION = "QualityPrecision"
    RECALL = "QualityRecall"
    LOG_LOSS = "QualityLogLoss"
    ECE = "QualityECE"
    MAE = "QualityMAE"
    RMSE = "QualityRMSE"
    LABEL_COVERAGE = "LabelCoverage"
    LABEL_DELAY_P50 = "LabelDelayP50"
    LABEL_DELAY_P90 = "LabelDelayP90"
    LABEL_DELAY_P99 = "LabelDelayP99"
    LABELS = "LabelsJoined"


@dataclass(frozen=True, slots=True)
class QualityFigures:
    """One window's figures; a figure is ``None`` when undefined (no labels, one class only)."""

    labels: int
    predictions: int
    labels_changed: int
    label_coverage: float | None
    delay_p50_s: float | None
    delay_p90_s: float | None
    delay_p99_s: float | None
    auc: float | None = None
    precision: float | None = None
    recall: float | None = None
    log_loss: float | None = None
    ece: float | None = None
    mae: float | None = None
    rmse: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metrics(self) -> dict[QualityMetric, float]:
        """The defined figures by metric name (what goes to CloudWatch)."""
        values = {
            QualityMetric.AUC: self.auc,
            QualityMetric.PRECISION: self.precision,
            QualityMetric.RECALL: self.recall,
            QualityMetric.LOG_LOSS: self.log_loss,
            QualityMetric.ECE: self.ece,
            QualityMetric.MAE: self.mae,
            QualityMetric.RMSE: self.rmse,
            QualityMetric.LABEL_COVERAGE: self.label_coverage,
            QualityMetric.LABEL_DELAY_P50: self.delay_p50_s,
            QualityMetric.LABEL_DELAY_P90: self.delay_p90_s,
            QualityMetric.LABEL_DELAY_P99: self.delay_p99_s,
            QualityMetric.LABELS: float(self.labels),
        }
        return {k: v for k, v in values.items() if v is not None}


class ExactSum:
    """A float sum that does not drift: the exact sum of each batch's correctly rounded sum
    (Shewchuk's partials, as ``math.fsum``), so taking a batch out again restores the total."""

    __slots__ = ("partials",)

    def __init__(self) -> None:
        self.partials: list[float] = []

    def add(self, x: float) -> None:
        out = []
        for part in self.partials:
            y = part
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                out.append(lo)
            x = hi
        out.append(x)
        self.partials = out

    def add_all(self, values: FloatArray) -> None:
        """Add a batch's correctly rounded sum (one rounding per batch, not per value)."""
        self.add(math.fsum(values.tolist()))

    @property
    def value(self) -> float:
        return math.fsum(self.partials)


def _as_float(name: str, values: Any) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size and not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)][:3].tolist()
        raise QualityError(f"{name} must be finite numbers, got {bad}; drop or fix those rows")
    return arr


def _check_lengths(n: int, **arrays: FloatArray | None) -> None:
    for name, arr in arrays.items():
        if arr is not None and arr.size != n:
            raise QualityError(f"{name} has {arr.size} values for {n} predictions; pass one each")


class _Window:
    """What every window counts: labels, predictions, changed labels and label delays."""

    def __init__(self) -> None:
        self.labels = 0
        self.predictions = 0
        self.labels_changed = 0
        self.delays: FloatArray = np.empty(0, np.float64)  # sorted

    def observe_predictions(self, n: int) -> None:
        """Count ``n`` predictions captured while the window was open (coverage's denominator)."""
        if n < 0:
            raise QualityError(f"predictions count {n} must be >= 0")
        self.predictions += n

    def count_changed(self, n: int = 1) -> None:
        """Count labels that replaced an earlier label for the same id (last one wins)."""
        self.labels_changed += n

    def _add_delays(self, delays: FloatArray | None, sign: int) -> None:
        if delays is None:
            return
        d = np.sort(delays)
        self.delays = _insert_sorted(self.delays, d) if sign > 0 else _delete_sorted(self.delays, d)

    def _merge_counts(self, other: _Window) -> None:
        self.labels += other.labels
        self.predictions += other.predictions
        self.labels_changed += other.labels_changed
        self.delays = _insert_sorted(self.delays, other.delays)

    def _common(self) -> dict[str, Any]:
        pct: list[float | None] = [None] * len(DELAY_PERCENTILES)
        if self.delays.size:
            pct = [float(v) for v in np.percentile(self.delays, DELAY_PERCENTILES)]
        coverage = self.labels / self.predictions if self.predictions else None
        return {
            "labels": self.labels,
            "predictions": self.predictions,
            "labels_changed": self.labels_changed,
            "label_coverage": coverage,
            "delay_p50_s": pct[0],
            "delay_p90_s": pct[1],
            "delay_p99_s": pct[2],
        }


class ClassificationWindow(_Window):
    """Quality of a binary classifier's scores (probability of the positive class) in one window."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, ece_bins: int = ECE_BINS) -> None:
        if not 0.0 <= threshold <= 1.0 or ece_bins < 1:
            raise QualityError(
                f"threshold={threshold} must be in [0, 1] and ece_bins={ece_bins} >= 1"
            )
        super().__init__()
        self.threshold = threshold
        self.ece_bins = ece_bins
        self._inner_edges = np.linspace(0.0, 1.0, ece_bins + 1)[1:-1]
        self.reset()

    def reset(self) -> None:
        """Empty the window (a new window opens); the threshold and bins stay."""
        _Window.__init__(self)
        self.rank = RankState()
        self.tp = self.fp = self.fn = 0
        self.loss = ExactSum()
        self.bin_n = np.zeros(self.ece_bins, np.int64)
        self.bin_pos = np.zeros(self.ece_bins, np.int64)
        self.bin_score = np.zeros(self.ece_bins, np.float64)

    def _inputs(
        self, scores: Any, labels: Any, delays_s: Any
    ) -> tuple[FloatArray, npt.NDArray[np.bool_], FloatArray | None]:
        s = _as_float("scores", scores)
        if s.size and (s.min() < 0.0 or s.max() > 1.0):
            raise QualityError(
                f"scores must be probabilities in [0, 1], got min {s.min()} max {s.max()}"
            )
        y_raw = np.asarray(labels).reshape(-1)
        if y_raw.size and not np.all((y_raw == 0) | (y_raw == 1)):
            bad = y_raw[(y_raw != 0) & (y_raw != 1)][:3].tolist()
            raise QualityError(f"binary labels must be 0/1 or bool, got {bad}")
        y = y_raw.astype(bool)
        d = None if delays_s is None else _as_float("delays_s", delays_s)
        _check_lengths(s.size, labels=y_raw.astype(np.float64), delays_s=d)
        return s, y, d

    def update(self, scores: Any, labels: Any, *, delays_s: Any = None) -> int:
        """Add labelled predictions; returns how many."""
        s, y, d = self._inputs(scores, labels, delays_s)
        self._apply(s, y, d, +1)
        return int(s.size)

    def remove(self, scores: Any, labels: Any, *, delays_s: Any = None) -> int:
        """Take labelled predictions out again (a label that changed), exactly."""
        s, y, d = self._inputs(scores, labels, delays_s)
        self._apply(s, y, d, -1)
        return int(s.size)

    def _apply(
        self, s: FloatArray, y: npt.NDArray[np.bool_], d: FloatArray | None, sign: int
    ) -> None:
        if s.size == 0:
            return
        (self.rank.add if sign > 0 else self.rank.remove)(s, y)
        self._add_delays(d, sign)
        hit = s >= self.threshold
        self.tp += sign * int(np.count_nonzero(hit & y))
        self.fp += sign * int(np.count_nonzero(hit & ~y))
        self.fn += sign * int(np.count_nonzero(~hit & y))
        p = np.where(y, s, 1.0 - s)  # the probability given to what happened
        terms = -np.log(np.clip(p, _EPS, 1.0 - _EPS))
        self.loss.add_all(terms if sign > 0 else -terms)
        bins = np.searchsorted(self._inner_edges, s)
        self.bin_n += sign * np.bincount(bins, minlength=self.ece_bins)
        self.bin_pos += sign * np.bincount(bins, weights=y, minlength=self.ece_bins).astype(
            np.int64
        )
        self.bin_score += sign * np.bincount(bins, weights=s, minlength=self.ece_bins)
        self.labels += sign * int(s.size)

    def merge(self, other: ClassificationWindow) -> None:
        """Fold another window with the same threshold and bins into this one."""
        if (other.threshold, other.ece_bins) != (self.threshold, self.ece_bins):
            raise QualityError(
                f"cannot merge windows with threshold/bins {other.threshold}/{other.ece_bins}"
                f" into {self.threshold}/{self.ece_bins}"
            )
        self.rank.merge(other.rank)
        self._merge_counts(other)
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        for part in other.loss.partials:
            self.loss.add(part)
        self.bin_n += other.bin_n
        self.bin_pos += other.bin_pos
        self.bin_score += other.bin_score

    def ece(self) -> float | None:
        """Expected calibration error: sum over bins of (bin share) * |mean label - mean score|."""
        if self.labels == 0:
            return None
        nz = self.bin_n > 0
        n = self.bin_n[nz]
        gap = np.abs(self.bin_pos[nz] / n - self.bin_score[nz] / n)
        return float(np.sum(gap * n) / self.labels)

    def figures(self) -> QualityFigures:
        """The window's figures now (scikit-learn's zero_division=0 for precision/recall)."""
        n = self.labels
        return QualityFigures(
            **self._common(),
            auc=self.rank.auc(),
            precision=(self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0) if n else None,
            recall=(self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0) if n else None,
            log_loss=self.loss.value / n if n else None,
            ece=self.ece(),
        )


class RegressionWindow(_Window):
    """Quality of a regression model's predictions in one window: MAE and RMSE."""

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        _Window.__init__(self)
        self.abs_err = ExactSum()
        self.sq_err = ExactSum()

    def update(self, predictions: Any, targets: Any, *, delays_s: Any = None) -> int:
        return self._apply(predictions, targets, delays_s, +1)

    def remove(self, predictions: Any, targets: Any, *, delays_s: Any = None) -> int:
        return self._apply(predictions, targets, delays_s, -1)

    def _apply(self, predictions: Any, targets: Any, delays_s: Any, sign: int) -> int:
        p = _as_float("predictions", predictions)
        t = _as_float("targets", targets)
        d = None if delays_s is None else _as_float("delays_s", delays_s)
        _check_lengths(p.size, targets=t, delays_s=d)
        err = t - p
        self.abs_err.add_all(sign * np.abs(err))
        self.sq_err.add_all(sign * err * err)
        self._add_delays(d, sign)
        self.labels += sign * int(p.size)
        return int(p.size)

    def merge(self, other: RegressionWindow) -> None:
        self._merge_counts(other)
        for part in other.abs_err.partials:
            self.abs_err.add(part)
        for part in other.sq_err.partials:
            self.sq_err.add(part)

    def figures(self) -> QualityFigures:
        n = self.labels
        return QualityFigures(
            **self._common(),
            mae=self.abs_err.value / n if n else None,
            rmse=math.sqrt(max(self.sq_err.value, 0.0) / n) if n else None,
        )


QualityWindow = ClassificationWindow | RegressionWindow


def new_window(regression: bool, threshold: float | None = DEFAULT_THRESHOLD) -> QualityWindow:
    """The window for a contract's task: ``regression`` from ``contract.task``."""
    if regression:
        return RegressionWindow()
    return ClassificationWindow(DEFAULT_THRESHOLD if threshold is None else threshold)
