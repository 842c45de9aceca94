"""Drift update throughput: feature values/s on one core, against other ways of computing drift.

    python -m bench.drift_throughput [--rows N] [--batch-rows B] [--strict] [--json]
                                     [--whylogs-python PATH]

The window is ``--rows`` synthetic card transactions (drift scenario, 6 monitored features), as
Arrow tables of ``--batch-rows`` rows (what the record processor hands the window per KCL batch).
Everything runs pinned to one CPU, Arrow's pools at one thread. Timed, on the same window:

* **ours**: ``DriftWindow.update`` per batch, then ``result()`` (PSI, JS, KS, χ², null-rate delta,
  out-of-range share for every feature). The target is >= 5 million feature values/s.
* **pandas/scipy**: a plain per-feature implementation on the window's DataFrame (``np.histogram``
  on the baseline's edges for PSI/JS, ``scipy.stats.ks_2samp`` against the raw baseline sample,
  ``value_counts`` + ``chi2_contingency`` for categoricals) — what one writes without a profile.
* **whylogs** (when available): ``why.log(window).view()`` then ``calculate_drift_scores`` against
  the reference profile (built outside the timing). whylogs 1.6 needs numpy < 2, which this
  project's lock does not allow, so it runs from a separate interpreter given by
  ``--whylogs-python`` (or ``DRIFTLINE_BENCH_WHYLOGS_PYTHON``) on the same rows written to Parquet.
  Evidently (0.7) was tried first and does not import with pandas 3.

Ratios are ours / other in values per second; ``--strict`` exits 1 if ours is below 5 M values/s
or below 20x whylogs (when whylogs ran).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats
from scipy.spatial.distance import jensenshannon

from etl.contract import load_contract
from etl.drift import DriftWindow
from etl.profile import NumericProfile, as_arrow, build_profile
from etl.synthetic import Scenario, generate_frame

TARGET_VALUES_PER_S = 5_000_000
TARGET_RATIO = 20.0


def pin_one_core() -> int:
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    return cpu


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def naive_drift(baseline_df: pd.DataFrame, window_df: pd.DataFrame, profile: Any) -> dict[str, Any]:
    """A plain per-feature pandas/scipy drift computation (the no-profile baseline)."""
    out: dict[str, Any] = {}
    for name, fp in profile.features.items():
        ref, cur = baseline_df[name], window_df[name]
        if isinstance(fp, NumericProfile):
            edges = np.concatenate([[-np.inf], fp.edges, [np.inf]])
            p = np.histogram(ref.dropna(), bins=edges)[0] / ref.notna().sum()
            q = np.histogram(cur.dropna(), bins=edges)[0] / cur.notna().sum()
            pe, qe = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
            out[name] = {
                "psi": float(np.sum((qe - pe) * np.log(qe / pe))),
                "js": float(jensenshannon(p, q, base=2)),
                "ks": float(stats.ks_2samp(ref.dropna(), cur.dropna()).statistic),
                "null_delta": float(cur.isna().mean() - ref.isna().mean()),
                "oor": float(((cur < ref.min()) | (cur > ref.max())).mean()),
            }
        else:
            rc, cc = ref.value_counts(), cur.value_counts()
            cats = rc.index.union(cc.index)
            a, b = rc.reindex(cats, fill_value=0), cc.reindex(cats, fill_value=0)
            pa_, qa = a / a.sum(), b / b.sum()
            pe, qe = np.maximum(pa_, 1e-4), np.maximum(qa, 1e-4)
            out[name] = {
                "psi": float(np.sum((qe - pe) * np.log(qe / pe))),
                "js": float(jensenshannon(pa_, qa, base=2)),
                "chi2_p": float(stats.chi2_contingency(np.vstack([a, b])).pvalue),
                "null_delta": float(cur.isna().mean() - ref.isna().mean()),
            }
    return out


WHYLOGS_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time, warnings
    warnings.filterwarnings("ignore")
    os.sched_setaffinity(0, {int(sys.argv[3])})
    import pandas as pd
    import whylogs as why
    from whylogs.viz.drift.column_drift_algorithms import calculate_drift_scores
    ref = pd.read_parquet(sys.argv[1])
    cur = pd.read_parquet(sys.argv[2])
    ref_view = why.log(ref).view()
    why.log(cur.iloc[:1000]).view()  # warm-up
    best = float("inf")
    for _ in range(int(sys.argv[4])):
        t = time.perf_counter()
        view = why.log(cur).view()
        scores = calculate_drift_scores(target_view=view, reference_view=ref_view)
        best = min(best, time.perf_counter() - t)
    import whylogs
    print(json.dumps({"seconds": best, "version": whylogs.__version__, "columns": len(scores)}))
    """
)


def run_whylogs(
    python: str, ref: pd.DataFrame, cur: pd.DataFrame, cpu: int, repeat: int
) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory() as d:
        rp, cp = Path(d) / "ref.parquet", Path(d) / "cur.parquet"
        ref.to_parquet(rp)
        cur.to_parquet(cp)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        proc = subprocess.run(
            [python, "-c", WHYLOGS_SCRIPT, str(rp), str(cp), str(cpu), str(repeat)],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
            check=False,
        )
    if proc.returncode != 0:
        print(f"whylogs run failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    doc: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch-rows", type=int, default=10_000)
    ap.add_argument("--baseline-rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--whylogs-python", default=os.environ.get("DRIFTLINE_BENCH_WHYLOGS_PYTHON"))
    args = ap.parse_args(argv)

    cpu = pin_one_core()
    contract = load_contract()
    features = [f.name for f in contract.features]
    base_df = generate_frame(args.baseline_rows, seed=1)[features]
    win_df = generate_frame(args.rows, seed=2, scenario=Scenario.DRIFT, drift_at=0.5)[features]
    profile = build_profile(base_df, contract)
    table = as_arrow(win_df)
    batches = table.to_batches(max_chunksize=args.batch_rows)
    values = args.rows * len(features)

    def ours() -> None:
        w = DriftWindow(profile, features)
        for b in batches:
            w.update(b)
        w.result()

    ours()  # warm-up
    t_ours = best_of(ours, args.repeat)
    t_naive = best_of(lambda: naive_drift(base_df, win_df, profile), args.repeat)
    # the same statistics from both (sanity): PSI of the first numeric feature
    first = next(f.name for f in contract.features if f.is_numeric)
    w = DriftWindow(profile, features)
    w.update(table)
    psi_ours = w.result().feature(first).psi
    psi_naive = naive_drift(base_df, win_df, profile)[first]["psi"]

    result: dict[str, Any] = {
        "rows": args.rows,
        "features": len(features),
        "batch_rows": args.batch_rows,
        "cpu": cpu,
        "ours_s": t_ours,
        "ours_values_per_s": values / t_ours,
        "pandas_scipy_s": t_naive,
        "pandas_scipy_values_per_s": values / t_naive,
        "ratio_vs_pandas_scipy": t_naive / t_ours,
        "psi_amount_ours": psi_ours,
        "psi_amount_pandas_scipy": psi_naive,
        "whylogs": None,
    }
    wl_python = args.whylogs_python
    if wl_python is None:
        try:
            import whylogs  # noqa: F401

            wl_python = sys.executable
        except ImportError:
            pass
    if wl_python:
        wl = run_whylogs(wl_python, base_df, win_df, cpu, args.repeat)
        if wl is not None:
            result["whylogs"] = {
                "version": wl["version"],
                "seconds": wl["seconds"],
                "values_per_s": values / wl["seconds"],
                "ratio": wl["seconds"] / t_ours,
            }
    else:
        print(
            "whylogs not available: install whylogs (numpy<2) in another interpreter and pass"
            " --whylogs-python",
            file=sys.stderr,
        )

    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(
            f"window: {args.rows:,} rows x {len(features)} features in batches of"
            f" {args.batch_rows:,} (cpu {cpu})"
        )
        print(f"ours          {t_ours:8.3f} s  {values / t_ours / 1e6:8.2f} M values/s")
        print(
            f"pandas/scipy  {t_naive:8.3f} s  {values / t_naive / 1e6:8.2f} M values/s"
            f"  -> ours is {t_naive / t_ours:.1f}x faster"
        )
        if result["whylogs"]:
            wl = result["whylogs"]
            print(
                f"whylogs {wl['version']:<6}{wl['seconds']:8.3f} s  {wl['values_per_s'] / 1e6:8.2f}"
                f" M values/s  -> ours is {wl['ratio']:.1f}x faster"
            )
        print(f"PSI({first}): ours {psi_ours:.6f}, pandas/scipy {psi_naive:.6f}")
    ok = result["ours_values_per_s"] >= TARGET_VALUES_PER_S
    if result["whylogs"]:
        ok = ok and result["whylogs"]["ratio"] >= TARGET_RATIO
    if args.strict and not ok:
        print("target missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
