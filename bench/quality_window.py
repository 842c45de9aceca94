"""Quality-window update throughput: labelled predictions/s on one core, against scikit-learn.

    python -m bench.quality_window [--rows N] [--batch-rows B] [--repeat R] [--strict] [--json]

A window of ``--rows`` labelled predictions (scores with signal, 30 % positives, scores rounded to
three decimals so ties and bin edges occur, exponential label delays) arrives in batches of
``--batch-rows`` (what the join hands the window as labels arrive). After every batch both paths
produce the current figures — ROC AUC, precision and recall at the 0.5 serving threshold, log
loss, expected calibration error (10 bins), label delay p50/p90/p99:

* **ours**: ``ClassificationWindow.update`` then ``figures()``;
* **scikit-learn, whole window each time**: ``roc_auc_score``, ``precision_score``,
  ``recall_score``, ``log_loss``, ``calibration_curve`` (+ the bins' sizes) and ``np.percentile``
  on all the window's rows so far — what one writes without an incremental state.

Pinned to one CPU. Throughput is rows / time over the whole window (best of ``--repeat``). After
every batch the figures are compared (outside the timing): counts identical, AUC to 1e-12 absolute,
sums to 1e-12 relative (docs/quality.md); a mismatch exits 1. ``--strict`` also exits 1 below 10x.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import log_loss, precision_score, recall_score, roc_auc_score

from etl.quality import DELAY_PERCENTILES, ECE_BINS, ClassificationWindow

TARGET_RATIO = 10.0
THRESHOLD = 0.5
Data = tuple[np.ndarray, np.ndarray, np.ndarray]


def pin_one_core() -> int:
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def make_data(rows: int, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype(np.int64)
    s = np.round(1 / (1 + np.exp(-(rng.normal(0, 1, rows) + 1.2 * y - 0.5))), 3)
    return s, y, rng.exponential(60.0, rows)


def ours(data: Data, batch: int) -> list[dict[str, Any]]:
    s, y, d = data
    w = ClassificationWindow(THRESHOLD)
    out = []
    for a in range(0, s.size, batch):
        w.update(s[a : a + batch], y[a : a + batch], delays_s=d[a : a + batch])
        out.append(w.figures().to_dict())
    return out


def sklearn_figures(s: np.ndarray, y: np.ndarray, d: np.ndarray) -> dict[str, Any]:
    pred = s >= THRESHOLD
    prob_true, prob_pred = calibration_curve(y, s, n_bins=ECE_BINS, strategy="uniform")
    sizes = np.bincount(np.searchsorted(np.linspace(0, 1, ECE_BINS + 1)[1:-1], s))
    p50, p90, p99 = np.percentile(d, DELAY_PERCENTILES)
    return {
        "labels": int(s.size),
        "auc": float(roc_auc_score(y, s)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "log_loss": float(log_loss(y, s, labels=[0, 1])),
        "ece": float(np.sum(sizes[sizes > 0] * np.abs(prob_true - prob_pred)) / s.size),
        "delay_p50_s": float(p50),
        "delay_p90_s": float(p90),
        "delay_p99_s": float(p99),
    }


def recompute(data: Data, batch: int) -> list[dict[str, Any]]:
    s, y, d = data
    return [
        sklearn_figures(s[: a + batch], y[: a + batch], d[: a + batch])
        for a in range(0, s.size, batch)
    ]


def mismatches(mine: list[dict[str, Any]], oracle: list[dict[str, Any]]) -> list[str]:
    """Figures that differ beyond the documented tolerance, by batch and name."""
    bad = []
    for i, (m, o) in enumerate(zip(mine, oracle, strict=True)):
        for key, want in o.items():
            got = m[key]
            if key in ("labels", "precision", "recall") or key.startswith("delay_"):
                ok = got == want
            elif key == "auc":
                ok = abs(got - want) <= 1e-12
            else:
                ok = abs(got - want) <= 1e-12 * abs(want)
            if not ok:
                bad.append(f"batch {i} {key}: ours {got!r} scikit-learn {want!r}")
    return bad


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def measure(rows: int, batch: int, repeat: int) -> dict[str, Any]:
    data = make_data(rows)
    t_ours, mine = best_of(lambda: ours(data, batch), repeat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_sk, oracle = best_of(lambda: recompute(data, batch), repeat)
    bad = mismatches(mine, oracle)
    return {
        "rows": rows,
        "batch_rows": batch,
        "batches": len(mine),
        "ours_rows_per_s": rows / t_ours,
        "sklearn_rows_per_s": rows / t_sk,
        "ratio": t_sk / t_ours,
        "target_ratio": TARGET_RATIO,
        "figures_compared": len(mine) * len(oracle[0]),
        "mismatches": bad[:10],
        "final": mine[-1],
        "load_average": os.getloadavg()[0],
    }


def render(r: dict[str, Any]) -> str:
    f = r["final"]
    return "\n".join(
        [
            f"quality window: {r['rows']:,} labelled predictions in {r['batches']} batches of"
            f" {r['batch_rows']:,}, figures after every batch"
            f" (one core, load {r['load_average']:.1f})",
            f"  ours (incremental)             {r['ours_rows_per_s']:>14,.0f} rows/s",
            f"  scikit-learn (whole window)    {r['sklearn_rows_per_s']:>14,.0f} rows/s",
            f"  ratio                          {r['ratio']:>14.1f}x"
            f"  (target >= {TARGET_RATIO:.0f}x)",
            f"  figures compared: {r['figures_compared']:,}, mismatches: {len(r['mismatches'])}",
            f"  final: AUC {f['auc']:.6f} precision {f['precision']:.6f} recall {f['recall']:.6f}"
            f" log loss {f['log_loss']:.6f} ECE {f['ece']:.6f} delay p90 {f['delay_p90_s']:.1f} s",
            *(f"  MISMATCH {m}" for m in r["mismatches"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--batch-rows", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    pin_one_core()
    result = measure(args.rows, args.batch_rows, args.repeat)
    print(json.dumps(result, indent=1) if args.json else render(result))
    if result["mismatches"]:
        return 1
    if args.strict and result["ratio"] < TARGET_RATIO:
        print("target missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
