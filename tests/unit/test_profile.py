"""Baselines: building, merging, JSON round trip, contract checks (pure, seeded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from etl.contract import Contract, load_contract, parse_contract
from etl.exceptions import BaselineError
from etl.profile import (
    CategoricalProfile,
    NumericProfile,
    Profile,
    ProfileOptions,
    build_profile,
    load_baseline,
    merge,
    write_baseline_file,
)

CONTRACT = load_contract()


def sample(n: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    dist = rng.exponential(5.0, n)
    dist[rng.random(n) < 0.1] = np.nan
    cats = np.array([f"mcc{i:02d}" for i in range(30)])
    return {
        "amount": rng.lognormal(3.0, 1.0, n),
        "merchant_category": cats[np.minimum(rng.geometric(0.15, n) - 1, 29)],
        "hour": rng.integers(0, 24, n),
        "distance_from_home_km": dist,
        "device": rng.choice(np.array(["mobile", "web", "pos"]), n),
        "country": rng.choice(np.array(["US", "GB", "DE", "FR"]), n, p=[0.7, 0.1, 0.1, 0.1]),
    }


def test_numeric_feature_has_quantile_edges_open_outer_bins_and_exact_counts() -> None:
    # GIVEN 10,000 seeded rows
    data = sample(10_000, seed=1)
    # WHEN profiled with 10 bins
    p = build_profile(data, CONTRACT, created_at="2026-01-01T00:00:00Z")
    amount = p.features["amount"]
    # THEN there are 9 interior edges at the deciles and every value lands in exactly one bin
    assert isinstance(amount, NumericProfile)
    expected_edges = np.quantile(data["amount"], np.linspace(0, 1, 11)[1:-1])
    np.testing.assert_allclose(amount.edges, expected_edges, rtol=0, atol=0)
    assert len(amount.counts) == 10
    assert sum(amount.counts) == 10_000
    assert amount.counts == tuple(
        int(c)
        for c in np.bincount(
            np.searchsorted(expected_edges, data["amount"], side="right"), minlength=10
        )
    )
    assert amount.min == float(data["amount"].min()) and amount.max == float(data["amount"].max())
    # AND the nullable feature counts its NaNs as nulls
    dist = p.features["distance_from_home_km"]
    assert dist.nulls == int(np.isnan(data["distance_from_home_km"]).sum())
    assert dist.n == 10_000


def test_low_cardinality_numeric_feature_gets_one_bin_per_value() -> None:
    # GIVEN an integer feature with 24 distinct values
    data = sample(5_000, seed=2)
    # WHEN profiled (even with many quantile bins asked for)
    p = build_profile(data, CONTRACT, options=ProfileOptions(bins=50))
    hour = p.features["hour"]
    # THEN it is discrete: each value v has the bin [v, nextafter(v)), gaps and tails are empty
    assert isinstance(hour, NumericProfile) and hour.discrete
    assert list(hour.edges) == sorted(set(hour.edges))
    assert len(hour.edges) == 48 and len(hour.counts) == 49
    assert hour.counts[1::2] == tuple(int(c) for c in np.bincount(data["hour"], minlength=24))
    assert set(hour.counts[0::2]) == {0}


def test_categorical_feature_keeps_top_k_and_other() -> None:
    # GIVEN 30 merchant categories with a geometric popularity
    data = sample(20_000, seed=3)
    # WHEN profiled with top_k=5
    p = build_profile(data, CONTRACT, options=ProfileOptions(top_k=5))
    mcc = p.features["merchant_category"]
    # THEN the five most frequent are kept in order and the rest sum into "other"
    assert isinstance(mcc, CategoricalProfile)
    values, counts = np.unique(data["merchant_category"], return_counts=True)
    order = sorted(zip(values, counts, strict=True), key=lambda vc: (-vc[1], vc[0]))
    assert mcc.categories == tuple(str(v) for v, _ in order[:5])
    assert mcc.counts[:5] == tuple(int(c) for _, c in order[:5])
    assert mcc.counts[5] == 20_000 - sum(int(c) for _, c in order[:5])
    assert mcc.nulls == 0


def test_profiles_of_two_halves_merge_into_the_profile_of_the_whole() -> None:
    # GIVEN a dataset and its profile
    data = sample(8_000, seed=4)
    whole = build_profile(data, CONTRACT, created_at="2026-01-01T00:00:00Z")
    # WHEN both halves are profiled on the whole's edges and merged
    first = build_profile({k: v[:3_000] for k, v in data.items()}, CONTRACT, edges_from=whole)
    second = build_profile({k: v[3_000:] for k, v in data.items()}, CONTRACT, edges_from=whole)
    merged = merge(first, second)
    # THEN every feature's counts, nulls and min/max equal the whole's exactly
    assert dict(merged.features) == dict(whole.features)
    assert merged.window.rows == 8_000


def test_merge_refuses_profiles_with_different_edges() -> None:
    # GIVEN two profiles built independently (different quantile edges)
    a = build_profile(sample(1_000, seed=5), CONTRACT)
    b = build_profile(sample(1_000, seed=6), CONTRACT)
    # WHEN/THEN merging them is refused with the fix named
    with pytest.raises(BaselineError, match="edges_from"):
        merge(a, b)


def test_json_round_trip_is_lossless_and_records_contract_and_window() -> None:
    # GIVEN a profile of an Arrow table with event times
    data = sample(2_000, seed=7)
    times = pa.array(
        np.arange(2_000) * 1_000_000 + 1_767_225_600_000_000, pa.timestamp("us", tz="UTC")
    )
    table = pa.table({**data, "event_time": times})
    p = build_profile(table, CONTRACT, source="unit-test", created_at="2026-01-01T00:00:00Z")
    # WHEN serialised and parsed back
    back = Profile.from_json(p.to_json())
    # THEN nothing is lost, and the document names the contract, hash and window
    assert back == p
    doc = json.loads(p.to_json())
    assert doc["contract"] == {"name": "card_transactions", "hash": CONTRACT.hash}
    assert doc["window"] == {
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-01T00:33:19Z",
        "rows": 2_000,
        "source": "unit-test",
    }
    assert p.version.startswith("20260101T000000Z-")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not a JSON document"),
        ('{"format": "other/1"}', "not a driftline baseline"),
        ("[1, 2]", "not a driftline baseline"),
        ('{"format": "driftline.profile/1", "contract": {"name": "x"}}', "malformed baseline"),
        (
            '{"format": "driftline.profile/1", "contract": {"name": "x", "hash": "h"},'
            ' "features": {"a": {"kind": "numeric", "edges": [1.0], "counts": [1],'
            ' "nulls": 0}}}',
            "malformed baseline",
        ),
    ],
)
def test_bad_documents_are_refused_with_a_clear_error(text: str, message: str) -> None:
    # WHEN/THEN a foreign or malformed document raises BaselineError naming the problem
    with pytest.raises(BaselineError, match=message):
        Profile.from_json(text, source="b.json")


def test_baseline_of_another_contract_is_refused(tmp_path: Path) -> None:
    # GIVEN a baseline written for the shipped contract
    p = build_profile(sample(1_000, seed=8), CONTRACT)
    path = write_baseline_file(tmp_path / "b.json", p)
    # AND a different contract (one more field)
    doc: dict[str, Any] = CONTRACT.to_dict()
    doc["fields"] = [*doc["fields"], {"name": "extra", "type": "float", "role": "attribute"}]
    other: Contract = parse_contract(doc)
    # WHEN/THEN using the baseline with it is refused, naming both hashes and the fix
    from etl.profile import check_contract

    with pytest.raises(BaselineError) as err:
        check_contract(load_baseline(path), other)
    assert CONTRACT.hash in str(err.value) and other.hash in str(err.value)
    assert "driftline baseline build" in str(err.value)


def test_build_refuses_data_without_a_feature() -> None:
    data = sample(100, seed=9)
    del data["device"]
    with pytest.raises(BaselineError, match="'device'"):
        build_profile(data, CONTRACT)


def test_pandas_and_arrow_inputs_give_the_same_profile() -> None:
    import pandas as pd

    data = sample(3_000, seed=10)
    a = build_profile(pd.DataFrame(data), CONTRACT, created_at="2026-01-01T00:00:00Z")
    b = build_profile(pa.table(data), CONTRACT, created_at="2026-01-01T00:00:00Z")
    assert a == b
