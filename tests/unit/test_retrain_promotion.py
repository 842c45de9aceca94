"""The pure promotion rule and the holdout metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from etl.exceptions import RetrainError
from retrain.evaluate import decide_promotion, score


@pytest.mark.parametrize(
    ("champion", "challenger", "promote", "reason"),
    [
        (None, 0.80, True, "no champion yet; challenger roc_auc=0.8000"),
        (
            0.62,
            0.91,
            True,
            "challenger roc_auc=0.9100 beats champion 0.6200 by 0.2900 (margin 0.01)",
        ),
        (
            0.90,
            0.91,
            True,
            "challenger roc_auc=0.9100 beats champion 0.9000 by 0.0100 (margin 0.01)",
        ),
        (
            0.90,
            0.905,
            False,
            "challenger roc_auc=0.9050 vs champion 0.9000: improvement 0.0050 is"
            " below the margin 0.01",
        ),
        (
            0.90,
            0.70,
            False,
            "challenger roc_auc=0.7000 vs champion 0.9000: improvement -0.2000 is"
            " below the margin 0.01",
        ),
        (math.nan, 0.70, True, "champion has no usable roc_auc; challenger roc_auc=0.7000"),
        (0.90, math.nan, False, "challenger roc_auc is undefined on this holdout"),
    ],
)
def test_promotion_rule(
    champion: float | None, challenger: float, promote: bool, reason: str
) -> None:
    # GIVEN metrics of both models on the same holdout
    champ = None if champion is None else {"roc_auc": champion}
    # WHEN the rule decides THEN the verdict and the recorded reason are exact
    got = decide_promotion(champ, {"roc_auc": challenger}, metric="roc_auc", margin=0.01)
    assert (got.promote, got.reason) == (promote, reason)


def test_lower_is_better_metrics_are_flipped() -> None:
    got = decide_promotion({"log_loss": 0.30}, {"log_loss": 0.20}, metric="log_loss", margin=0.05)
    assert got.promote and got.improvement == pytest.approx(0.10)


def test_an_unknown_metric_is_a_clear_error() -> None:
    with pytest.raises(RetrainError, match="challenger metrics lack 'pr_auc'"):
        decide_promotion(None, {"roc_auc": 0.9}, metric="pr_auc", margin=0.0)


def test_score_matches_sklearn_and_handles_one_class() -> None:
    # GIVEN seeded labels and scores
    rng = np.random.default_rng(5)
    y = rng.random(500) < 0.1
    p = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    # WHEN scored THEN ROC AUC equals sklearn's, counts are exact
    got = score(y, p)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert (got["rows"], got["positives"]) == (500.0, float(y.sum()))
    # AND a single-class holdout has no AUC (never promotes)
    assert math.isnan(score(np.zeros(10, bool), np.full(10, 0.2))["roc_auc"])
