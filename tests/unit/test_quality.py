"""Quality windows against scikit-learn as the oracle, and the window contract battery (pure).

Tolerances (docs/quality.md): counts and ratios of counts (precision, recall, coverage) are
identical; ROC AUC to 1e-12 absolute (ours is the exact rational 2U / 2PN rounded once, scikit-
learn's a trapezoid sum); sums (log loss, ECE, MAE, RMSE) to 1e-12 relative (ours are correctly
rounded per batch, scikit-learn's pairwise-summed); delay percentiles identical (numpy's own).
"""

from __future__ import annotations

import itertools
import pickle
from typing import Any

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    log_loss,
    mean_absolute_error,
    precision_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from etl.exceptions import QualityError
from etl.quality import (
    DELAY_PERCENTILES,
    ClassificationWindow,
    QualityMetric,
    RegressionWindow,
    new_window,
)
from etl.quality_rank import RankState

REL = 1e-12


def labelled(n: int, seed: int, *, ties: bool = False) -> tuple[Any, Any, Any]:
    """Scores that carry signal, 0/1 labels, and label delays in seconds."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    s = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.2 * y - 0.5)))
    if ties:
        s = np.round(s, 2)  # many equal scores: AUC's half-counted ties, bin edges hit exactly
    s[:3] = [0.0, 1.0, 0.5]  # log loss clipping and the threshold itself
    d = rng.exponential(30.0, n)
    return s, y, d


def oracle_ece(y: Any, s: Any, n_bins: int = 10) -> float:
    # scikit-learn's calibration_curve gives each non-empty bin's mean label and mean score; the
    # bin sizes follow its documented binning (searchsorted on the inner edges)
    prob_true, prob_pred = calibration_curve(y, s, n_bins=n_bins, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], s), minlength=n_bins)
    counts = counts[counts > 0]
    return float(np.sum(counts * np.abs(prob_true - prob_pred)) / len(s))


def assert_matches_sklearn(w: ClassificationWindow, s: Any, y: Any, d: Any) -> None:
    f = w.figures()
    pred = s >= w.threshold
    assert f.labels == len(s)
    assert f.auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert f.precision == precision_score(y, pred, zero_division=0)
    assert f.recall == recall_score(y, pred, zero_division=0)
    assert f.log_loss == pytest.approx(log_loss(y, s, labels=[0, 1]), rel=REL)
    assert f.ece == pytest.approx(oracle_ece(y, s), rel=REL)
    p50, p90, p99 = np.percentile(d, DELAY_PERCENTILES)
    assert (f.delay_p50_s, f.delay_p90_s, f.delay_p99_s) == (p50, p90, p99)


# -- every figure against scikit-learn, batch by batch ---------------------------------------------
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_figures_equal_sklearn_after_every_batch(seed: int, ties: bool) -> None:
    # GIVEN 2,000 labelled predictions arriving in uneven batches
    s, y, d = labelled(2_000, seed, ties=ties)
    w = ClassificationWindow(threshold=0.5)
    cuts = [0, 1, 7, 200, 201, 950, 1500, 2000]
    for a, b in itertools.pairwise(cuts):
        # WHEN each batch is added
        w.update(s[a:b], y[a:b], delays_s=d[a:b])
        # THEN its figures are scikit-learn's on everything so far (once both classes are in)
        if len(set(y[:b].tolist())) == 2:
            assert_matches_sklearn(w, s[:b], y[:b], d[:b])


@pytest.mark.parametrize("threshold", [0.0, 0.25, 0.9, 1.0])
def test_precision_recall_follow_the_serving_threshold(threshold: float) -> None:
    # GIVEN a window at a non-default serving threshold (a score equal to it is positive)
    s, y, d = labelled(500, 7, ties=True)
    w = ClassificationWindow(threshold=threshold)
    w.update(s, y, delays_s=d)
    # THEN precision and recall are scikit-learn's on score >= threshold, zero_division=0
    f = w.figures()
    assert f.precision == precision_score(y, s >= threshold, zero_division=0)
    assert f.recall == recall_score(y, s >= threshold, zero_division=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regression_figures_equal_sklearn(seed: int) -> None:
    # GIVEN regression predictions and targets in batches
    rng = np.random.default_rng(seed)
    t = rng.normal(50, 10, 3_000)
    p = t + rng.normal(0, 3, 3_000)
    w = new_window(regression=True)
    assert isinstance(w, RegressionWindow)
    for a in range(0, 3_000, 250):
        w.update(p[a : a + 250], t[a : a + 250], delays_s=np.full(250, 5.0))
        # THEN MAE and RMSE are scikit-learn's on everything so far
        f = w.figures()
        assert f.mae == pytest.approx(mean_absolute_error(t[: a + 250], p[: a + 250]), rel=REL)
        assert f.rmse == pytest.approx(root_mean_squared_error(t[: a + 250], p[: a + 250]), rel=REL)
        assert f.auc is None and f.delay_p99_s == 5.0


def test_auc_is_exact_on_a_hand_computed_case() -> None:
    # GIVEN positives 0.9, 0.4 and negatives 0.4, 0.1: pairs 1, 1, 1/2, 1 of 4
    r = RankState()
    r.add(np.array([0.9, 0.4, 0.4, 0.1]), np.array([True, True, False, False]))
    # THEN AUC = 3.5 / 4 exactly, and 2U is the integer 7
    assert (r.u2, r.auc()) == (7, 0.875)


# -- undefined figures -----------------------------------------------------------------------------
def test_empty_and_one_class_windows_give_none_not_errors() -> None:
    w = ClassificationWindow()
    f = w.figures()
    assert (f.labels, f.auc, f.precision, f.log_loss, f.ece, f.label_coverage) == (
        0,
        None,
        None,
        None,
        None,
        None,
    )
    # GIVEN only positives: AUC is undefined (scikit-learn raises), the rest is defined
    w.update([0.8, 0.3], [1, 1])
    f = w.figures()
    assert f.auc is None and f.recall == 0.5 and f.precision == 1.0
    assert f.delay_p50_s is None  # no delays given
    assert QualityMetric.AUC not in f.metrics() and f.metrics()[QualityMetric.RECALL] == 0.5


def test_label_coverage_is_labels_over_predictions_captured() -> None:
    w = ClassificationWindow()
    w.observe_predictions(8)
    w.update([0.2, 0.7], [0, 1])
    w.count_changed()
    f = w.figures()
    assert (f.label_coverage, f.labels_changed, f.predictions) == (0.25, 1, 8)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.5, float("nan")], [0, 1], "finite"),
        ([0.5, 1.5], [0, 1], r"\[0, 1\]"),
        ([0.5, 0.2], [0, 2], "0/1"),
        ([0.5, 0.2], [0], "1 values for 2"),
    ],
)
def test_bad_input_is_refused_and_leaves_the_window_unchanged(
    scores: list[float], labels: list[int], message: str
) -> None:
    w = ClassificationWindow()
    w.update([0.9, 0.1], [1, 0])
    before = w.figures()
    with pytest.raises(QualityError, match=message):
        w.update(scores, labels)
    assert w.figures() == before


# -- the window contract battery: merge, remove, pickle, reset, determinism ------------------------
@pytest.mark.parametrize("ties", [False, True])
def test_merging_split_windows_equals_one_window(ties: bool) -> None:
    # GIVEN one stream split across three shards' windows
    s, y, d = labelled(1_500, 3, ties=ties)
    parts = [ClassificationWindow() for _ in range(3)]
    for i, w in enumerate(parts):
        w.update(s[i::3], y[i::3], delays_s=d[i::3])
        w.observe_predictions(600)
    # WHEN they are merged
    whole = parts[0]
    whole.merge(parts[1])
    whole.merge(parts[2])
    # THEN the figures are those of all rows together
    assert_matches_sklearn(whole, s, y, d)
    assert whole.figures().label_coverage == 1_500 / 1_800


def test_removing_rows_is_the_exact_inverse_of_adding_them() -> None:
    # GIVEN a window, and a changed label (last one wins): old row out, new row in
    s, y, d = labelled(1_000, 4, ties=True)
    w = ClassificationWindow()
    w.update(s, y, delays_s=d)
    changed = np.array([10, 11, 500])
    w.remove(s[changed], y[changed], delays_s=d[changed])
    y2 = y.copy()
    y2[changed] = 1 - y2[changed]
    w.update(s[changed], y2[changed], delays_s=d[changed])
    # THEN the window equals one built from the final labels
    assert_matches_sklearn(w, s, y2, d)
    # AND removing a score that was never added is refused
    with pytest.raises(ValueError, match="not in the window"):
        w.rank.remove(np.array([0.123456789]), np.array([True]))


def test_regression_merge_and_remove() -> None:
    rng = np.random.default_rng(9)
    t, p = rng.normal(0, 1, 400), rng.normal(0, 1, 400)
    a, b = RegressionWindow(), RegressionWindow()
    a.update(p[:150], t[:150])
    b.update(p[150:], t[150:])
    b.update(p[:5], t[:5] + 100)  # rows later taken out again
    b.remove(p[:5], t[:5] + 100)
    a.merge(b)
    f = a.figures()
    assert f.mae == pytest.approx(mean_absolute_error(t, p), rel=REL)
    assert f.rmse == pytest.approx(root_mean_squared_error(t, p), rel=REL)


def test_a_window_survives_pickling_and_resets_to_empty() -> None:
    # GIVEN a window half full (a lease handover pickles it)
    s, y, d = labelled(800, 5)
    w = ClassificationWindow(threshold=0.3)
    w.update(s[:400], y[:400], delays_s=d[:400])
    # WHEN it is pickled, restored and fed the rest
    w2 = pickle.loads(pickle.dumps(w))
    w2.update(s[400:], y[400:], delays_s=d[400:])
    # THEN it equals a window never pickled, fed the same batches
    ref = ClassificationWindow(threshold=0.3)
    ref.update(s[:400], y[:400], delays_s=d[:400])
    ref.update(s[400:], y[400:], delays_s=d[400:])
    assert w2.figures() == ref.figures()
    # AND reset empties it but keeps the threshold
    w2.reset()
    assert w2.figures().labels == 0 and w2.threshold == 0.3


def test_figures_are_deterministic_whatever_the_batching() -> None:
    s, y, d = labelled(1_000, 6, ties=True)
    one = ClassificationWindow()
    one.update(s, y, delays_s=d)
    many = ClassificationWindow()
    for a in range(0, 1_000, 37):
        many.update(s[a : a + 37], y[a : a + 37], delays_s=d[a : a + 37])
    f1, f2 = one.figures(), many.figures()
    # counts, AUC, precision/recall, delays identical; the sums within one rounding per batch
    assert (f1.auc, f1.precision, f1.recall, f1.delay_p90_s) == (
        f2.auc,
        f2.precision,
        f2.recall,
        f2.delay_p90_s,
    )
    assert f1.log_loss == pytest.approx(f2.log_loss, rel=REL)
    assert f1.ece == pytest.approx(f2.ece, rel=REL)
