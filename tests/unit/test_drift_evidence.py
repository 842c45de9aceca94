"""Issue 11's blind spots, calibration and the CUSUM (pure, seeded; scipy as the oracle)."""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np
import pytest
from scipy import stats

from etl.binning import data_edges
from etl.calibration import (
    binomial_sf_z,
    calibrate_feature,
    chi2_homogeneity,
    cusum_arl,
    ks_z,
    upper_z,
    wilson_hilferty,
)
from etl.contract import parse_contract
from etl.cusum import Cusum
from etl.drift import DriftWindow, check
from etl.exceptions import BaselineError
from etl.profile import NumericProfile, Profile, build_profile, merge

CONTRACT = parse_contract(
    {
        "name": "t",
        "version": 1,
        "partition_key": "id",
        "fields": [
            {"name": "id", "type": "string", "role": "id", "required": True},
            {"name": "ts", "type": "timestamp", "role": "event_time", "required": True},
            {"name": "v", "type": "float", "role": "feature", "nullable": True},
            {"name": "w", "type": "float", "role": "feature", "nullable": True},
        ],
    }
)


def profile(v: np.ndarray, seed: int = 0) -> Profile:
    w = np.random.default_rng(seed).standard_normal(v.size)
    return build_profile({"v": v, "w": w}, CONTRACT, created_at="2026-01-01T00:00:00Z")


def window(v: np.ndarray, seed: int = 1) -> dict[str, Any]:
    return {"v": v, "w": np.random.default_rng(seed).standard_normal(v.size)}


def mix(values: dict[float, float], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keys = np.array(list(values))
    return keys[rng.choice(keys.size, size=n, p=np.array(list(values.values())))]


# -- blind spots of the first drift statistic, each now seen -------------------------------------
@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({0.0: 0.95, 1.0: 0.05}, {0.0: 0.50, 1.0: 0.50}),  # 0/1 flag 5 % -> 50 % ones
        ({0.0: 2.5e-2, 5.0: 0.95, 10.0: 2.5e-2}, {5.0: 0.475, 10.0: 0.525}),  # dominant interior
        ({7.0: 1.0}, {9.0: 1.0}),  # a constant, then another constant
    ],
)
def test_dominant_values_get_their_own_bins_and_drift_scores(
    before: dict[float, float], after: dict[float, float]
) -> None:
    # GIVEN a baseline dominated by one value (the old quantile bins merged it away)
    base = profile(mix(before, 20_000, seed=1))
    fp = base.features["v"]
    assert isinstance(fp, NumericProfile) and fp.discrete
    # WHEN a window of the changed distribution is checked
    r = check(window(mix(after, 1_000, seed=2)), base).feature("v")
    # THEN the feature scores far above its calibrated line, and PSI sees it too
    assert r.score is not None and r.score > 3.0
    assert r.psi is not None and r.psi > 0.2


def test_zero_inflated_count_keeps_a_bin_for_zero_and_quantile_bins_for_the_rest() -> None:
    # GIVEN 92 % zeros and a continuous tail
    rng = np.random.default_rng(3)
    v = np.where(rng.random(20_000) < 0.92, 0.0, rng.exponential(10.0, 20_000) + 1.0)
    edges, discrete = data_edges(v, bins=10)
    # THEN 0 has the bin [0, nextafter(0)) and the tail still gets quantile edges
    assert not discrete and edges[:2] == (0.0, float(np.nextafter(0.0, 1.0)))
    assert len(edges) >= 9
    # AND zeros going from 92 % to 40 % score as drift
    w = np.where(rng.random(1_000) < 0.40, 0.0, rng.exponential(10.0, 1_000) + 1.0)
    r = check(window(w), profile(v)).feature("v")
    assert r.score is not None and r.score > 3.0


def test_nulls_raise_the_score_and_an_all_null_window_still_scores() -> None:
    # GIVEN a baseline with 5 % nulls
    rng = np.random.default_rng(4)
    v = rng.standard_normal(20_000)
    v[rng.random(20_000) < 0.05] = np.nan
    base = profile(v)
    # WHEN nulls rise to 50 %, or the window is all null for v
    half = rng.standard_normal(1_000)
    half[rng.random(1_000) < 0.5] = np.nan
    r_half = check(window(half), base)
    r_all = check(window(np.full(1_000, np.nan)), base)
    # THEN both score far above 1 (PSI cannot: it sees only non-null values)
    assert r_half.feature("v").score > 3.0  # type: ignore[operator]
    assert r_all.drift_score is not None and r_all.drift_score > 3.0
    assert r_all.feature("v").psi is None and r_all.feature("v").status == "empty"
    # AND the other feature is still reported, not hidden by v's silence
    assert r_all.feature("w").score is not None and r_all.feature("w").score < 1.0


def test_infinities_count_as_nulls_and_never_as_out_of_range() -> None:
    # GIVEN a baseline with some +inf and -inf values
    rng = np.random.default_rng(5)
    v = rng.standard_normal(5_000)
    v[:3], v[3:5] = np.inf, -np.inf
    base = profile(v)
    fp = base.features["v"]
    # THEN they are nulls, counted apart, min/max are finite, the JSON is strict
    assert isinstance(fp, NumericProfile)
    assert (fp.nulls, fp.nonfinite) == (5, 5)
    assert np.isfinite([fp.min, fp.max]).all()
    json.loads(base.to_json(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    # AND a window with an inf reports it as non-finite, not out of range
    w = rng.standard_normal(600)
    w[0] = np.inf
    r = check(window(w), base).feature("v")
    assert (r.nonfinite, r.nulls) == (1, 1)
    assert r.out_of_range_share == pytest.approx(
        float(np.sum((w[1:] < fp.min) | (w[1:] > fp.max))) / 599
    )


def test_a_window_below_min_rows_gets_statistics_but_no_score() -> None:
    base = profile(np.random.default_rng(6).standard_normal(5_000))
    r = check(window(np.array([8.0])), base, min_rows=500)
    assert r.too_small and r.drift_score is None
    assert r.feature("v").evidence is not None


# -- statistics against scipy ---------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chi2_homogeneity_equals_scipy_chi2_contingency_without_correction(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(1, 200, 8), rng.integers(0, 60, 8)
    a[2] = b[2] = 0  # an empty column is dropped
    x, dof = chi2_homogeneity(a, b)
    keep = (a + b) > 0
    ref = stats.chi2_contingency(np.vstack([a, b])[:, keep], correction=False)
    assert x[0] == pytest.approx(ref.statistic, rel=1e-12) and dof == ref.dof


def test_wilson_hilferty_and_upper_z_track_scipy_in_the_tail() -> None:
    for dof in (3, 9, 40):  # at 1 dof it is rougher: the calibration draws absorb that
        for p in (1e-2, 1e-4, 1e-6):
            x = stats.chi2.isf(p, dof)
            z = float(wilson_hilferty(np.array([x]), dof)[0])
            assert z == pytest.approx(stats.norm.isf(p), abs=0.2)
    ps = np.array([1e-12, 1e-5, 0.02, 0.5, 0.9])
    np.testing.assert_allclose(upper_z(ps), stats.norm.isf(ps), rtol=1e-8, atol=1e-9)


def test_ks_z_is_kolmogorovs_asymptotic_tail_and_binomial_z_is_scipys() -> None:
    base, win = np.array([400, 300, 200, 100]), np.array([60, 80, 120, 140])
    d = np.max(np.abs(np.cumsum(base) / 1000 - np.cumsum(win) / 400))
    p = stats.kstwobign.sf(d * np.sqrt(1000 * 400 / 1400))
    assert float(ks_z(base, win)[0]) == pytest.approx(stats.norm.isf(p), rel=1e-6)
    for x, n, rate in ((1, 500, 1e-4), (3, 500, 1e-4), (40, 10_000, 1e-3)):
        want = stats.norm.isf(stats.binom.sf(x - 1, n, rate))
        assert binomial_sf_z(x, n, rate) == pytest.approx(want, rel=1e-6)


# -- calibration ---------------------------------------------------------------------------------
def test_calibrated_threshold_holds_its_false_alarm_rate_on_fresh_null_windows() -> None:
    # GIVEN a feature's decile counts, calibrated for 1 false window in 100 (measurable here)
    base = np.full(10, 2_000)
    cal = calibrate_feature(base, 0, window_rows=500, target_rate=0.02, seed=1)
    # WHEN 20,000 fresh windows of the same distribution are scored (other seed)
    rng = np.random.default_rng(99)
    w = np.append(rng.multinomial(500, np.full(10, 0.1), size=20_000), np.zeros((20_000, 1)), 1)
    x, dof = chi2_homogeneity(np.append(base, 0), w.astype(np.int64))
    z = np.maximum(wilson_hilferty(x, dof), ks_z(base, w[:, :-1].astype(np.int64)))
    # THEN the per-window share above the threshold is the target's half (1 %), within noise
    assert 0.006 < float(np.mean(z > cal.z_threshold)) < 0.014


def test_cusum_threshold_gives_its_run_length_on_simulated_null_streams() -> None:
    # GIVEN z ~ N(0, 1) and h for a null run length of 200 windows
    rng = np.random.default_rng(7)
    z = rng.standard_normal(20_000)
    h = 3.6
    arl = cusum_arl(z, h)
    # WHEN 2,000 CUSUMs run on fresh null streams until they cross
    s, t, done, step = np.zeros(2_000), np.zeros(2_000), np.zeros(2_000, bool), 0
    while not done.all():
        step += 1
        s = np.maximum(0.0, s + rng.standard_normal(2_000) - 0.5)
        new = (s > h) & ~done
        t[new], done = step, done | new
    # THEN the Brook–Evans run length is within 15 % of the simulated mean
    assert abs(arl - t.mean()) / t.mean() < 0.15


def test_thresholds_round_trip_in_json_and_old_formats_load_or_fail_clearly() -> None:
    base = profile(np.random.default_rng(8).standard_normal(5_000))
    assert Profile.from_json(base.to_json()) == base
    # a format-1 document (no calibration) still loads and is calibrated by the window
    doc = json.loads(base.to_json())
    doc["format"], doc["calibration"] = "driftline.profile/1", None
    old = Profile.from_dict(doc)
    assert old.calibration is None and DriftWindow(old).calibration == base.calibration
    doc["format"] = "driftline.profile/9"
    with pytest.raises(BaselineError, match=r"format 'driftline.profile/9' is not one this"):
        Profile.from_dict(doc)


def test_merged_profile_is_recalibrated_and_equals_the_whole() -> None:
    v = np.random.default_rng(9).standard_normal(4_000)
    whole = profile(v)
    a = build_profile(window(v[:2_000], 0), CONTRACT, edges_from=whole)
    b = build_profile(window(v[2_000:], 0), CONTRACT, edges_from=whole)
    merged = merge(a, b)
    assert merged.features["v"] == whole.features["v"] and merged.calibration is not None


# -- the CUSUM inside the window: contract battery ------------------------------------------------
def _stream(seed: int, windows: int = 6, shift: float = 0.15) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [window(rng.standard_normal(500) + shift, seed + i) for i in range(windows)]


BASE = profile(np.random.default_rng(10).standard_normal(20_000))


def test_small_persistent_shift_accumulates_in_the_cusum_until_it_alarms() -> None:
    w = DriftWindow(BASE)
    cusums, scores = [], []
    for batch in _stream(11, windows=12, shift=0.2):
        w.update(batch)
        r = w.close().feature("v")
        cusums.append(r.cusum)
        scores.append(r.score)
    assert cusums[-1] > cusums[2] > 0  # type: ignore[operator]
    assert max(s for s in scores if s is not None) > 1.0


def test_battery_cusum_state_survives_pickle_and_reset_keeps_it() -> None:
    w = DriftWindow(BASE)
    for batch in _stream(12, windows=3):
        w.update(batch)
        w.close()
    clone = pickle.loads(pickle.dumps(w))
    nxt = _stream(13, windows=1)[0]
    w.update(nxt)
    clone.update(nxt)
    assert clone.close() == w.close()
    before = w.cusums["v"].statistic
    w.reset()
    assert w.cusums["v"].statistic == before and w.rows == 0


def test_battery_cusum_is_deterministic_and_its_reset_starts_over() -> None:
    c1, c2 = Cusum(threshold=5.0), Cusum(threshold=5.0)
    zs = np.random.default_rng(14).normal(1.0, 1.0, 30).tolist()
    assert [c1.update(z) for z in zs] == [c2.update(z) for z in zs]
    c1.reset()
    assert (c1.statistic, c1.drift_detected) == (0.0, False)
    assert pickle.loads(pickle.dumps(c2)) == c2
