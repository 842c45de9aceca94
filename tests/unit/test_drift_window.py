"""The drift window's one-pass statistics against the per-feature reference functions and scipy,
the rank test in the evidence, and calibrations made for an older evidence (pure, seeded)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from etl.calibration import (
    EVIDENCE_VERSION,
    kolmogorov_z1,
    ks_lambda,
    ks_z,
    rank_abs_z,
    rank_z,
    rank_z1,
    upper_z,
    upper_z1,
)
from etl.contract import parse_contract
from etl.drift import DriftWindow, chi2_pvalue, js_distance, ks_statistic, psi
from etl.profile import NumericProfile, Profile, ProfileOptions, build_profile

CONTRACT = parse_contract(
    {
        "name": "t",
        "version": 1,
        "partition_key": "id",
        "fields": [
            {"name": "id", "type": "string", "role": "id", "required": True},
            {"name": "ts", "type": "timestamp", "role": "event_time", "required": True},
            {"name": "x", "type": "float", "role": "feature", "nullable": True},
            {"name": "flag", "type": "int", "role": "feature", "nullable": True},
            {"name": "c", "type": "string", "role": "feature", "nullable": True},
            {"name": "y", "type": "float", "role": "feature", "nullable": True},
        ],
    }
)
CATS = np.array([f"k{i}" for i in range(6)])


def data(n: int, seed: int, *, shift: float = 0.0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) + shift
    x[rng.random(n) < 0.05] = np.nan
    c = CATS[rng.choice(6, n, p=[0.3, 0.25, 0.2, 0.15, 0.07, 0.03])].astype(object)
    c[rng.random(n) < 0.02] = None
    return {
        "x": x,
        "flag": (rng.random(n) < 0.1 + shift / 4).astype(np.int64),
        "c": c,
        "y": rng.exponential(2.0, n) * (1.0 + shift),
    }


BASE = build_profile(data(20_000, seed=1), CONTRACT, created_at="2026-01-01T00:00:00Z")


@pytest.mark.parametrize(("seed", "shift", "rows"), [(2, 0.0, 500), (3, 0.3, 500), (4, 1.0, 3)])
def test_one_pass_statistics_equal_the_per_feature_reference_functions(
    seed: int, shift: float, rows: int
) -> None:
    # GIVEN a window over numeric, discrete and categorical features of different bin counts
    w = DriftWindow(BASE)
    w.update(data(rows, seed, shift=shift))
    r = w.result()
    # THEN each statistic is what the reference function gives on that feature's counts
    for f in r.features:
        fp = BASE.features[f.name]
        base, win = np.array(fp.counts), w.counts(f.name)
        assert f.psi == pytest.approx(psi(base, win), rel=1e-12, abs=1e-15)
        assert f.js_distance == pytest.approx(js_distance(base, win), rel=1e-12, abs=1e-15)
        if isinstance(fp, NumericProfile):
            assert f.ks_statistic == pytest.approx(ks_statistic(base, win), abs=1e-15)
        else:
            assert f.chi2_pvalue == pytest.approx(chi2_pvalue(base, win), rel=1e-10)


def test_rank_test_on_bins_is_scipys_mann_whitney_with_ties() -> None:
    rng = np.random.default_rng(5)
    b, w = rng.integers(0, 7, 3_000), rng.integers(1, 8, 400)
    bc, wc = np.bincount(b, minlength=8), np.bincount(w, minlength=8)
    p = stats.mannwhitneyu(w, b, method="asymptotic", use_continuity=False).pvalue
    assert float(rank_z(bc, wc)[0]) == pytest.approx(stats.norm.isf(p), rel=1e-9)
    # AND the scalar tails the window uses agree with the vectorised ones the calibration uses
    assert rank_z1(float(rank_abs_z(bc, wc)[0])) == pytest.approx(float(rank_z(bc, wc)[0]))
    lam = float(ks_lambda(bc, wc)[0])
    assert kolmogorov_z1(lam) == pytest.approx(float(ks_z(bc, wc)[0]), rel=1e-12)
    ps = np.array([1e-300, 1e-12, 0.01, 0.3, 0.5, 0.9, 1.0])
    assert [upper_z1(float(q)) for q in ps] == pytest.approx(upper_z(ps).tolist(), rel=1e-12)
    # AND an empty side is "no test"
    assert float(rank_z(bc, np.zeros(8))[0]) == float(ks_z(bc, np.zeros(8))[0]) < -30


def test_a_quarter_sd_shift_is_seen_in_most_single_500_row_windows() -> None:
    # GIVEN a baseline calibrated for 2e-5 false windows per feature (the bench's rate)
    opts = ProfileOptions(target_rate=2e-5, window_rows=500)
    base = build_profile(data(20_000, seed=6), CONTRACT, options=opts, features=["x"])
    # WHEN 40 fresh windows, the mean moved by 0.25 sd, are each scored on their own
    hits = 0
    for seed in range(40):
        w = DriftWindow(base)
        w.update({"x": data(500, seed=100 + seed, shift=0.25)["x"]})
        r = w.close().feature("x")
        hits += r.score is not None and r.score > 1.0
    # THEN most alarm at once (32 of 40 here; without the rank test, 15: χ² and binned KS)
    assert hits >= 24


def test_thresholds_of_an_older_evidence_are_recalibrated_when_a_window_opens() -> None:
    doc = json.loads(BASE.to_json())
    assert doc["calibration"]["evidence"] == EVIDENCE_VERSION
    del doc["calibration"]["evidence"]  # written before the rank test joined the evidence
    for fc in doc["calibration"]["features"].values():
        fc["z_threshold"] = 1.0
    old = Profile.from_dict(doc)
    assert old.calibration is not None and not old.calibration.current
    w = DriftWindow(old)
    assert w.calibration.current and w.calibration == BASE.calibration


def test_many_distinct_categories_and_a_range_that_does_not_bracket_the_edges() -> None:
    # GIVEN a profile of part of the data on the whole's edges (its min/max inside the edges)
    whole = build_profile(data(5_000, seed=7), CONTRACT)
    part = {k: v[(data(5_000, seed=7)["x"] > 0.5)] for k, v in data(5_000, seed=7).items()}
    sub = build_profile(part, CONTRACT, edges_from=whole)
    fx = sub.features["x"]
    assert isinstance(fx, NumericProfile) and fx.min is not None and fx.max is not None
    # AND a window with 300 unseen categories (Arrow maps them) and values on both sides
    n = 1_000
    win = data(n, seed=8)
    win["c"] = np.array([f"new{i % 300}" for i in range(n)], dtype=object)
    win["c"][:10] = None
    w = DriftWindow(sub)
    w.update(pa.table({k: pa.array(v, from_pandas=True) for k, v in win.items()}))
    r = w.result()
    # THEN the counts are the profile's counts of the same data, "other" and nulls included
    same = build_profile(win, CONTRACT, edges_from=sub)
    for name in ("x", "c", "flag", "y"):
        assert tuple(w.counts(name)) == same.features[name].counts
    assert r.feature("c").nulls == 10 and r.feature("c").out_of_range_share == 1.0
    # AND the out-of-range share is the brute-force share
    x = win["x"][np.isfinite(win["x"])]
    want = np.count_nonzero((x < fx.min) | (x > fx.max)) / x.size
    assert r.feature("x").out_of_range_share == pytest.approx(want, abs=0.0)
    assert not math.isnan(r.drift_score or math.nan)
