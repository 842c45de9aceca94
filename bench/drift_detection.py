"""Detection power and false alarms: driftline's calibrated drift detection next to a
Bonferroni-corrected KS/χ² test per window and ADWIN (River), on the same seeded streams.

    python -m bench.drift_detection [--trials 200] [--stationary-windows 100] [--adwin-python PATH]
                                    [--detectors ours,ks_chi2,adwin] [--strict] [--json]

Streams: 5 features, 500-row windows, baselines of 20,000 rows (a pool of 10 per layout; trial
``t`` uses baseline ``t mod 10``), ``--trials`` seeded trials per scenario:

* **stationary**: 5 N(0, 1) features, ``--stationary-windows`` windows per trial: false alarms;
* **shift 0.5 sd / 0.25 sd**: feature ``x0``'s mean moves by 0.5 / 0.25 sd after 5 calm windows;
* **flag 5 → 20 %**: ``x4`` is a 0/1 int flag whose share of ones goes from 5 % to 20 %;
* **nulls 5 → 30 %**: ``x0`` has 5 % nulls, then 30 %;
* **new category 10 %**: ``x4`` is a category (a 40 %, b 30 %, c 20 %, d 10 %); a new value ``e``
  takes 10 % (the others shrink in proportion).

Detectors, each at one false window per 10,000 over the 5 features (so 2e-5 per feature):

* **ours**: :class:`etl.drift.DriftWindow` with the baseline's calibrated thresholds
  (``target_rate=2e-5``), ``close()`` per window; an alarm is ``drift_score > 1`` (per-window
  evidence or the CUSUM);
* **KS/χ²**: per feature, two-sample KS (asymptotic p) of the window's non-null values against the
  baseline's raw values, or χ² of homogeneity for the category; alarm when a p-value is below
  ``1e-4 / 5`` (Bonferroni);
* **ADWIN** (``delta=0.002``, River, run from ``make bench-tools``'s venv): one detector per numeric
  feature on its values, per category on its indicator, and on the null indicator of a feature
  whose baseline has nulls; warmed up on the baseline's rows.

Delay = windows from the onset to the first alarm (1 = the first drifted window). Targets (issue
11): false alarms ≤ 1 per 10,000 stationary windows; 0.5 sd in the first window ≥ 95 %; 0.25 sd
within 5 windows ≥ 90 %; flag, nulls, new category within 2 windows ≥ 95 %. ``--strict`` exits 1
when ours misses one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from etl.contract import Contract, parse_contract
from etl.drift import DriftWindow
from etl.profile import Profile, ProfileOptions, build_profile

WINDOW_ROWS = 500
BASELINE_ROWS = 20_000
POOL = 10
PRE_WINDOWS = 5
POST_WINDOWS = 10
WINDOW_RATE = 1e-4
FEATURES = ("x0", "x1", "x2", "x3", "x4")
CATS = np.array(["a", "b", "c", "d", "e"])
ADWIN_DELTA = 0.002
DEFAULT_ADWIN = Path(__file__).parent / ".tools" / "river" / "bin" / "python"

Data = dict[str, np.ndarray]


@dataclass(frozen=True)
class Scenario:
    name: str
    layout: str  # gauss | flag | nulls | category
    shift: float = 0.0  # x0 mean shift (sd)
    within: int = 1  # target: detected within this many windows ...
    share: float = 0.95  # ... in at least this share of trials


SCENARIOS = (
    Scenario("shift 0.5 sd", "gauss", shift=0.5, within=1, share=0.95),
    Scenario("shift 0.25 sd", "gauss", shift=0.25, within=5, share=0.90),
    Scenario("flag 5 -> 20 %", "flag", within=2),
    Scenario("nulls 5 -> 30 %", "nulls", within=2),
    Scenario("new category 10 %", "category", within=2),
)


def contract(layout: str) -> Contract:
    def field(name: str) -> dict[str, Any]:
        if name == "x4" and layout == "category":
            kind = "string"
        elif name == "x4" and layout == "flag":
            kind = "int"
        else:
            kind = "float"
        return {"name": name, "type": kind, "role": "feature", "nullable": True}

    return parse_contract(
        {
            "name": f"bench_{layout}",
            "version": 1,
            "partition_key": "id",
            "fields": [
                {"name": "id", "type": "string", "role": "id", "required": True},
                {"name": "t", "type": "timestamp", "role": "event_time", "required": True},
                *[field(n) for n in FEATURES],
            ],
        }
    )


def draw(layout: str, n: int, rng: np.random.Generator, *, drifted: bool, shift: float) -> Data:
    x = {name: rng.standard_normal(n) for name in FEATURES}
    if drifted:
        x["x0"] = x["x0"] + shift
    if layout == "flag":
        x["x4"] = (rng.random(n) < (0.20 if drifted else 0.05)).astype(np.int64)
    elif layout == "nulls":
        x["x0"][rng.random(n) < (0.30 if drifted else 0.05)] = np.nan
    elif layout == "category":
        p = np.array([0.4, 0.3, 0.2, 0.1, 0.0])
        if drifted:
            p = np.append(p[:4] * 0.9, 0.1)
        x["x4"] = CATS[rng.choice(5, size=n, p=p)]
    return x


# -- the detectors ------------------------------------------------------------------------------
class Ours:
    def __init__(self, profile: Profile) -> None:
        self.window = DriftWindow(profile)

    def alarm(self, data: Data) -> bool:
        self.window.update(data)
        score = self.window.close().drift_score
        return score is not None and score > 1.0


class KsChi2:
    """Bonferroni over the features: KS (numeric, non-null values) or χ² (categorical)."""

    def __init__(self, base: Data) -> None:
        self.sorted = {}
        self.cats = {}
        for name, col in base.items():
            if col.dtype.kind in "fi":
                v = col[~np.isnan(col)] if col.dtype.kind == "f" else col
                self.sorted[name] = np.sort(v.astype(np.float64))
            else:
                self.cats[name] = {c: int((col == c).sum()) for c in CATS}

    def pvalue(self, name: str, col: np.ndarray) -> float:
        if name in self.cats:
            win = {c: int((col == c).sum()) for c in CATS}
            keep = [c for c in CATS if self.cats[name][c] + win[c] > 0]
            table = [[self.cats[name][c] for c in keep], [win[c] for c in keep]]
            return float(stats.chi2_contingency(table)[1]) if len(keep) > 1 else 1.0
        b = self.sorted[name]
        w = np.sort(col[~np.isnan(col)] if col.dtype.kind == "f" else col.astype(np.float64))
        if w.size == 0:
            return 1.0
        grid = np.concatenate([b, w])
        d = np.max(
            np.abs(
                np.searchsorted(b, grid, side="right") / b.size
                - np.searchsorted(w, grid, side="right") / w.size
            )
        )
        en = b.size * w.size / (b.size + w.size)
        return float(stats.kstwobign.sf(d * np.sqrt(en)))

    def alarm(self, data: Data) -> bool:
        ps = [self.pvalue(name, col) for name, col in data.items()]
        return min(ps) < WINDOW_RATE / len(ps)


# -- running ------------------------------------------------------------------------------------
@dataclass
class Pool:
    layout: str
    data: list[Data]
    profiles: list[Profile]


def make_pool(layout: str, seed: int) -> Pool:
    c = contract(layout)
    data, profiles = [], []
    for b in range(POOL):
        rng = np.random.default_rng([seed, b])
        base = draw(layout, BASELINE_ROWS, rng, drifted=False, shift=0.0)
        data.append(base)
        profiles.append(
            build_profile(
                base,
                c,
                created_at="2026-01-01T00:00:00Z",
                options=ProfileOptions(
                    target_rate=WINDOW_RATE / len(FEATURES), window_rows=WINDOW_ROWS
                ),
            )
        )
    return Pool(layout, data, profiles)


def streams(pool: Pool, sc: Scenario | None, trials: int, windows: int, seed: int) -> list[Data]:
    out = []
    for t in range(trials):
        rng = np.random.default_rng([seed, t])
        pre = windows if sc is None else PRE_WINDOWS
        calm = draw(pool.layout, pre * WINDOW_ROWS, rng, drifted=False, shift=0.0)
        if sc is None:
            out.append(calm)
            continue
        post = draw(pool.layout, POST_WINDOWS * WINDOW_ROWS, rng, drifted=True, shift=sc.shift)
        out.append({k: np.concatenate([calm[k], post[k]]) for k in calm})
    return out


def alarm_windows(detector: Callable[[Data], bool], stream: Data) -> list[int]:
    rows = len(next(iter(stream.values())))
    return [
        i
        for i in range(rows // WINDOW_ROWS)
        if detector({k: v[i * WINDOW_ROWS : (i + 1) * WINDOW_ROWS] for k, v in stream.items()})
    ]


def run_python_side(
    pool: Pool, data: list[Data], detectors: tuple[str, ...] = ("ours", "ks_chi2")
) -> dict[str, list[list[int]]]:
    out: dict[str, list[list[int]]] = {
        name: [] for name in ("ours", "ks_chi2") if name in detectors
    }
    for t, stream in enumerate(data):
        b = t % POOL
        if "ours" in out:
            out["ours"].append(alarm_windows(Ours(pool.profiles[b]).alarm, stream))
        if "ks_chi2" in out:
            out["ks_chi2"].append(alarm_windows(KsChi2(pool.data[b]).alarm, stream))
    return out


def _matrix(d: Data) -> np.ndarray:
    cols = []
    for name in FEATURES:
        col = d[name]
        if col.dtype.kind not in "fi":
            col = np.searchsorted(CATS, col).astype(np.float64)
        cols.append(col.astype(np.float64))
    return np.stack(cols, axis=1)


def run_adwin(python: Path, pool: Pool, data: list[Data]) -> list[list[int]] | None:
    if not python.exists():
        return None
    kinds = [1 if pool.data[0][n].dtype.kind not in "fi" else 0 for n in FEATURES]
    kinds = [2 if k == 0 and np.isnan(pool.data[0][n].astype(float)).any() else k
             for k, n in zip(kinds, FEATURES, strict=True)]  # fmt: skip
    arrays: dict[str, Any] = {f"warm_{b}": _matrix(d) for b, d in enumerate(pool.data)}
    arrays.update({f"stream_{t}": _matrix(d) for t, d in enumerate(data)})
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(
            src,
            kinds=np.array(kinds),
            window_rows=WINDOW_ROWS,
            delta=ADWIN_DELTA,
            trials=len(data),
            base=np.arange(len(data)) % POOL,
            **arrays,
        )
        runner = Path(__file__).parent / "_adwin_runner.py"
        subprocess.run([str(python), str(runner), str(src), str(dst)], check=True)
        result: list[list[int]] = json.loads(dst.read_text())
    return result


def summarise_stationary(alarms: list[list[int]], windows: int) -> dict[str, Any]:
    total = len(alarms) * windows
    n = sum(len(a) for a in alarms)
    return {"windows": total, "false_alarms": n, "rate": n / total}


def summarise_onset(alarms: list[list[int]], sc: Scenario) -> dict[str, Any]:
    delays = []
    early = 0
    for a in alarms:
        early += sum(1 for i in a if i < PRE_WINDOWS)
        after = [i - PRE_WINDOWS + 1 for i in a if i >= PRE_WINDOWS]
        delays.append(after[0] if after else None)
    hit = [d is not None and d <= sc.within for d in delays]
    found = [d for d in delays if d is not None]
    return {
        "detected_within_target": sum(hit) / len(hit),
        "target": f"within {sc.within} window(s) in >= {sc.share:.0%}",
        "median_delay": float(np.median(found)) if found else None,
        "missed_all_10": sum(d is None for d in delays),
        "false_alarms_before_onset": early,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    detectors = tuple(args.detectors.split(","))
    adwin_py = Path(args.adwin_python if "adwin" in detectors else "/nonexistent")
    pools = {
        lay: make_pool(lay, seed=i) for i, lay in enumerate(("gauss", "flag", "nulls", "category"))
    }
    report: dict[str, Any] = {"stationary": {}, "scenarios": {}}
    calm = streams(pools["gauss"], None, args.trials, args.stationary_windows, seed=100)
    t = time.perf_counter()
    side = run_python_side(pools["gauss"], calm, detectors)
    for name, alarms in side.items():
        report["stationary"][name] = summarise_stationary(alarms, args.stationary_windows)
    aw = min(args.stationary_windows, args.adwin_stationary_windows)
    short = [{k: v[: aw * WINDOW_ROWS] for k, v in d.items()} for d in calm]
    adwin = run_adwin(adwin_py, pools["gauss"], short)
    if adwin is not None:
        report["stationary"]["adwin"] = summarise_stationary(adwin, aw)
    report["stationary_seconds"] = round(time.perf_counter() - t, 1)
    for i, sc in enumerate(SCENARIOS):
        data = streams(pools[sc.layout], sc, args.trials, 0, seed=200 + i)
        side = run_python_side(pools[sc.layout], data, detectors)
        row = {name: summarise_onset(a, sc) for name, a in side.items()}
        adwin = run_adwin(adwin_py, pools[sc.layout], data)
        if adwin is not None:
            row["adwin"] = summarise_onset(adwin, sc)
        report["scenarios"][sc.name] = row
    return report


def misses(report: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if "ours" not in report["stationary"]:
        return out
    if report["stationary"]["ours"]["rate"] > WINDOW_RATE:
        out.append("false alarms above 1 per 10,000 windows")
    for sc in SCENARIOS:
        got = report["scenarios"][sc.name]["ours"]["detected_within_target"]
        if got < sc.share:
            out.append(f"{sc.name}: {got:.1%} < {sc.share:.0%}")
    return out


def render(report: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"{args.trials} trials, {WINDOW_ROWS}-row windows, {BASELINE_ROWS}-row baselines,"
        " all detectors at 1 false window per 10,000 (5 features)",
        "stationary: false alarms / windows (rate)",
    ]
    for name, s in report["stationary"].items():
        lines.append(f"  {name:8s} {s['false_alarms']} / {s['windows']} ({s['rate']:.2e})")
    lines.append("onset after 5 calm windows: detected within target | median delay | missed"
                 " all 10 | false alarms before onset")  # fmt: skip
    for sc_name, row in report["scenarios"].items():
        lines.append(f"  {sc_name} ({next(iter(row.values()))['target']})")
        for name, r in row.items():
            delay = "-" if r["median_delay"] is None else f"{r['median_delay']:g}"
            lines.append(
                f"    {name:8s} {r['detected_within_target']:7.1%}  {delay:>4s}"
                f"  {r['missed_all_10']:4d}  {r['false_alarms_before_onset']:4d}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--stationary-windows", type=int, default=100)
    ap.add_argument("--adwin-stationary-windows", type=int, default=50)
    ap.add_argument(
        "--adwin-python",
        default=os.environ.get("DRIFTLINE_BENCH_RIVER_PYTHON", str(DEFAULT_ADWIN)),
        help="python of a venv with River (make bench-tools); skipped when absent",
    )
    ap.add_argument(
        "--detectors",
        default="ours,ks_chi2,adwin",
        help="comma-separated subset of ours,ks_chi2,adwin (the streams are seeded: each"
        " detector's figures do not depend on the others)",
    )
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    report = run(args)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=1) if args.json else render(report, args))
    missed = misses(report)
    if missed:
        print("targets missed: " + "; ".join(missed), file=sys.stderr)
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
