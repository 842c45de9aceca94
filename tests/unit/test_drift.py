"""Drift statistics against scipy as the oracle, and the DriftWindow contract battery (pure)."""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from etl.contract import load_contract
from etl.drift import (
    PSI_EPSILON,
    DriftWindow,
    WindowPolicy,
    check,
    chi2_pvalue,
    js_distance,
    ks_statistic,
    psi,
)
from etl.profile import NumericProfile, build_profile

CONTRACT = load_contract()
FEATURES = [f.name for f in CONTRACT.features]


def sample(n: int, seed: int, *, shift: float = 0.0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    dist = rng.exponential(5.0 + 20 * shift, n)
    dist[rng.random(n) < 0.1 + 0.2 * shift] = np.nan
    p_country = np.array([0.7 - 0.5 * shift, 0.1, 0.1, 0.1 + 0.5 * shift])
    return {
        "amount": rng.lognormal(3.0 + shift, 1.0, n),
        "merchant_category": rng.choice(np.array(["grocery", "fuel", "travel", "online"]), n),
        "hour": rng.integers(0, 24, n),
        "distance_from_home_km": dist,
        "device": rng.choice(np.array(["mobile", "web", "pos"]), n),
        "country": rng.choice(np.array(["US", "GB", "DE", "FR"]), n, p=p_country),
    }


BASELINE = build_profile(sample(20_000, seed=100), CONTRACT, created_at="2026-01-01T00:00:00Z")


# -- the statistics against their oracles ---------------------------------------------------------
def test_psi_matches_a_hand_computed_case() -> None:
    # GIVEN baseline shares (0.5, 0.3, 0.2, 0) and window shares (0.25, 0.25, 0.25, 0.25)
    expected = np.array([50, 30, 20, 0])
    actual = np.array([25, 25, 25, 25])
    # WHEN PSI is computed
    got = psi(expected, actual)
    # THEN it equals the sum by hand, the empty bin floored at epsilon = 1e-4
    by_hand = (
        (0.25 - 0.5) * math.log(0.25 / 0.5)
        + (0.25 - 0.3) * math.log(0.25 / 0.3)
        + (0.25 - 0.2) * math.log(0.25 / 0.2)
        + (0.25 - 1e-4) * math.log(0.25 / 1e-4)
    )
    assert PSI_EPSILON == 1e-4
    assert got == pytest.approx(by_hand, rel=1e-12)
    assert psi(expected, expected) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_js_distance_equals_scipy_on_the_same_bins(seed: int) -> None:
    # GIVEN two count vectors on the same bins, some bins empty
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 100, 12)
    b = rng.integers(0, 100, 12)
    a[3] = 0
    b[7] = 0
    # THEN our JS distance is scipy's (base 2) to 1e-12
    assert js_distance(a, b) == pytest.approx(jensenshannon(a, b, base=2), abs=1e-12)
    assert js_distance(a, a) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_ks_statistic_is_within_bin_resolution_of_ks_2samp(shift: float) -> None:
    # GIVEN a baseline sample and a (possibly shifted) window sample
    base = sample(20_000, seed=100)["amount"]
    win = sample(5_000, seed=7, shift=shift)["amount"]
    fp = BASELINE.features["amount"]
    assert isinstance(fp, NumericProfile)
    # WHEN the window is binned on the baseline's edges
    w = DriftWindow(BASELINE, ["amount"])
    w.update({"amount": win})
    got = w.result().feature("amount").ks_statistic
    # THEN the binned KS is never above the raw one and below it by at most the largest bin share
    raw = stats.ks_2samp(base, win).statistic
    counts = w.counts("amount")
    resolution = max(np.max(np.array(fp.counts) / sum(fp.counts)), np.max(counts / counts.sum()))
    assert got is not None
    assert raw - resolution - 1e-12 <= got <= raw + 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chi2_pvalue_equals_chi2_contingency(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(50, 500, 6)
    b = rng.integers(10, 100, 6)
    b[2] = 0  # a zero cell (column total still > 0)
    expected = stats.chi2_contingency(np.vstack([a, b])).pvalue
    assert chi2_pvalue(a, b) == pytest.approx(expected, rel=1e-10, abs=1e-300)


def test_chi2_pvalue_with_one_degree_of_freedom_uses_yates_like_scipy() -> None:
    a, b = np.array([120, 80, 0]), np.array([30, 45, 0])  # the empty column is dropped: dof 1
    expected = stats.chi2_contingency(np.vstack([a[:2], b[:2]])).pvalue
    assert chi2_pvalue(a, b) == pytest.approx(expected, rel=1e-12)


def test_ks_of_identical_counts_is_zero_and_of_disjoint_is_one() -> None:
    assert ks_statistic(np.array([1, 2, 3]), np.array([2, 4, 6])) == 0.0
    assert ks_statistic(np.array([5, 0]), np.array([0, 5])) == 1.0


# -- the window -----------------------------------------------------------------------------------
def test_stationary_window_has_low_drift_and_shifted_window_high() -> None:
    # GIVEN a window of stationary data and one of shifted data
    calm, shifted = DriftWindow(BASELINE), DriftWindow(BASELINE)
    calm.update(sample(2_000, seed=1))
    shifted.update(sample(2_000, seed=1, shift=1.0))
    r_calm, r_shift = calm.result(), shifted.result()
    # THEN the stationary drift score stays under its calibrated line (1) and the shifted one
    # is far above it, its largest PSI too (0.05 / 0.2: the PSI folklore lines)
    assert r_calm.drift_score is not None and r_calm.drift_score < 1.0
    assert r_calm.max_psi is not None and r_calm.max_psi < 0.05
    assert r_shift.drift_score is not None and r_shift.drift_score > 5.0
    assert r_shift.max_psi is not None and r_shift.max_psi > 0.2
    # AND the drift score is the largest feature score, the max PSI the largest PSI
    assert r_shift.drift_score == max(f.score for f in r_shift.features if f.score is not None)
    assert r_shift.max_psi == max(f.psi for f in r_shift.features if f.psi is not None)
    # AND null-rate delta and out-of-range share move the right way
    dist = r_shift.feature("distance_from_home_km")
    assert dist.null_rate_delta is not None and dist.null_rate_delta > 0.1
    assert dist.out_of_range_share is not None and dist.out_of_range_share > 0.0
    assert r_shift.feature("country").chi2_pvalue is not None
    assert r_shift.feature("country").chi2_pvalue < 1e-6  # type: ignore[operator]


def test_window_counts_equal_the_profile_of_the_same_data() -> None:
    # GIVEN data profiled on the baseline's edges
    data = sample(3_000, seed=11)
    expect = build_profile(data, CONTRACT, edges_from=BASELINE)
    # WHEN the same data streams through a window in three uneven batches
    w = DriftWindow(BASELINE)
    for sl in (slice(0, 7), slice(7, 1_500), slice(1_500, None)):
        w.update(pa.table({k: v[sl] for k, v in data.items()}))
    # THEN the window's counts equal the profile's, feature by feature
    assert w.rows == 3_000
    for name in FEATURES:
        assert tuple(int(c) for c in w.counts(name)) == expect.features[name].counts


def test_missing_features_are_reported_not_crashed_on() -> None:
    # GIVEN a baseline without "device" and data without "country"
    feats = [f for f in FEATURES if f != "device"]
    base = build_profile(sample(5_000, seed=12), CONTRACT, features=feats)
    data = sample(1_000, seed=13)
    del data["country"]
    # WHEN the contract's features are monitored
    result = check(data, base, features=FEATURES)
    # THEN both are listed as missing with their reason and the rest is computed
    assert result.missing == ("device", "country")  # contract order
    assert result.feature("device").status == "missing_in_baseline"
    assert result.feature("country").status == "missing_in_data"
    assert result.feature("amount").status == "ok"
    assert result.drift_score is not None


def test_categorical_unseen_values_go_to_other_and_bools_are_categorical() -> None:
    base = build_profile(sample(5_000, seed=14), CONTRACT)
    data = sample(1_000, seed=15)
    data["device"] = np.array(["kiosk"] * 1_000)
    r = check(data, base).feature("device")
    assert r.out_of_range_share == 1.0
    assert r.psi is not None and r.psi > 1.0


def test_empty_window_reports_no_score() -> None:
    result = DriftWindow(BASELINE).result()
    assert result.rows == 0 and result.drift_score is None
    assert all(f.status == "empty" for f in result.features)


# -- contract battery -----------------------------------------------------------------------------
def _fed_window(seed: int) -> DriftWindow:
    w = DriftWindow(BASELINE)
    w.update(sample(1_000, seed=seed, shift=0.5))
    return w


def test_battery_pickle_round_trip_keeps_state_and_keeps_working() -> None:
    # GIVEN a window half-way through (state handed over with a lease)
    w = _fed_window(20)
    clone = pickle.loads(pickle.dumps(w))
    # WHEN both see the same next batch
    nxt = sample(500, seed=21)
    w.update(nxt)
    clone.update(nxt)
    # THEN they agree exactly
    assert clone.result() == w.result()


def test_battery_reset_empties_the_window() -> None:
    w = _fed_window(22)
    w.reset()
    assert w.result() == DriftWindow(BASELINE).result()
    w.update(sample(800, seed=23))
    fresh = DriftWindow(BASELINE)
    fresh.update(sample(800, seed=23))
    assert w.result() == fresh.result()


def test_battery_determinism() -> None:
    assert _fed_window(24).result() == _fed_window(24).result()


def test_window_policy_closes_only_when_old_enough_and_full_enough() -> None:
    policy = WindowPolicy(window_s=60, min_rows=500)
    assert not policy.should_close(now=59.9, opened_at=0.0, rows=10_000)
    assert not policy.should_close(now=600.0, opened_at=0.0, rows=499)  # extends
    assert policy.should_close(now=60.0, opened_at=0.0, rows=500)
    with pytest.raises(ValueError, match="min_rows"):
        WindowPolicy(min_rows=0)
