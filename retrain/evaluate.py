"""Champion vs challenger on the same holdout, and the pure promotion rule.

>>> decide_promotion({"roc_auc": 0.62}, {"roc_auc": 0.91}, metric="roc_auc", margin=0.01).promote
True
>>> decide_promotion({"roc_auc": 0.90}, {"roc_auc": 0.905}, metric="roc_auc", margin=0.01).promote
False
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from etl.exceptions import RetrainError

if TYPE_CHECKING:  # numpy.typing is numpy >= 1.20; the container's numpy may be older
    import numpy.typing as npt

#: Metrics where lower is better; all others are higher-is-better.
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
BINARY = "binary_classification"
REGRESSION = "regression"


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    metric: str
    champion: float | None
    challenger: float
    #: challenger - champion, signed so that positive means "challenger better".
    improvement: float | None


def decide_promotion(
    champion: Mapping[str, float] | None,
    challenger: Mapping[str, float],
    *,
    metric: str,
    margin: float,
) -> PromotionDecision:
    """Promote when there is no champion, or the challenger beats it by at least ``margin``.

    Both sets of metrics must come from the same holdout. A NaN challenger metric (e.g. a holdout
    with one class only) never promotes.
    """
    if metric not in challenger:
        raise RetrainError(
            f"challenger metrics lack {metric!r} (have {sorted(challenger)}); set"
            " promotion_metric to one the evaluation computes"
        )
    value = float(challenger[metric])
    if np.isnan(value):
        return PromotionDecision(
            False, f"challenger {metric} is undefined on this holdout", metric, None, value, None
        )
    if champion is None:
        return PromotionDecision(
            True, f"no champion yet; challenger {metric}={value:.4f}", metric, None, value, None
        )
    if metric not in champion or np.isnan(float(champion[metric])):
        return PromotionDecision(
            True,
            f"champion has no usable {metric}; challenger {metric}={value:.4f}",
            metric,
            None,
            value,
            None,
        )
    base = float(champion[metric])
    improvement = base - value if metric in LOWER_IS_BETTER else value - base
    if improvement >= margin - 1e-12:
        return PromotionDecision(
            True,
            f"challenger {metric}={value:.4f} beats champion {base:.4f} by {improvement:.4f}"
            f" (margin {margin})",
            metric,
            base,
            value,
            improvement,
        )
    return PromotionDecision(
        False,
        f"challenger {metric}={value:.4f} vs champion {base:.4f}: improvement {improvement:.4f}"
        f" is below the margin {margin}",
        metric,
        base,
        value,
        improvement,
    )


def score(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    *,
    threshold: float = 0.5,
    task: str = BINARY,
) -> dict[str, float]:
    """The task's metrics of scores against labels: ROC AUC and friends for binary
    classification (NaN where undefined), RMSE, MAE and R² for regression."""
    if task == REGRESSION:
        return regression_score(y_true, y_score)
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        f1_score,
        log_loss,
        roc_auc_score,
    )

    y = np.asarray(y_true).astype(bool)
    p = np.clip(np.asarray(y_score, dtype=float), 1e-7, 1 - 1e-7)
    pred = p >= threshold
    both = bool(y.any() and (~y).any())
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "average_precision": float(average_precision_score(y, p)) if both else float("nan"),
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(f1_score(y, pred, zero_division=0.0)),
        "log_loss": float(log_loss(y, p, labels=[False, True])),
        "rows": float(len(y)),
        "positives": float(y.sum()),
    }


def regression_score(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> dict[str, float]:
    """RMSE and MAE (lower is better) and R² of predictions against true values."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    err = p - y
    var = float(np.var(y)) if len(y) else 0.0
    return {
        "rmse": float(np.sqrt(np.mean(err**2))) if len(y) else float("nan"),
        "mae": float(np.mean(np.abs(err))) if len(y) else float("nan"),
        "r2": 1.0 - float(np.mean(err**2)) / var if var > 0 else float("nan"),
        "rows": float(len(y)),
    }
