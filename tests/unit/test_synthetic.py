"""The synthetic generator: determinism, contract typing, scenario properties and poison."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from etl.contract import load_contract
from etl.generator import plan_for
from etl.synthetic import (
    POISON_KINDS,
    Scenario,
    encode_record,
    generate_frame,
    generate_records,
    make_poison,
)

CONTRACT = load_contract()
PLAN = plan_for(CONTRACT)


def test_same_seed_same_records_and_other_seed_differs() -> None:
    # GIVEN two runs with the same arguments and one with another seed
    a = generate_records(500, seed=11, scenario=Scenario.DRIFT)
    b = generate_records(500, seed=11, scenario=Scenario.DRIFT)
    c = generate_records(500, seed=12, scenario=Scenario.DRIFT)
    # THEN the same seed gives identical records; another seed different ids and values
    assert a == b
    assert {r["transaction_id"] for r in a}.isdisjoint({r["transaction_id"] for r in c})
    assert [r["amount"] for r in a] != [r["amount"] for r in c]


def test_records_fit_the_contract_and_event_time_advances() -> None:
    # GIVEN 100 records at 4 events per second from a fixed start
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    recs = generate_records(100, seed=1, start=start, events_per_second=4.0)
    # THEN every record has exactly the contract's fields, ids are unique, times step 0.25 s
    assert all(list(r) == [f.name for f in CONTRACT.fields] for r in recs)
    assert len({r["transaction_id"] for r in recs}) == 100
    assert recs[0]["event_time"] == "2026-03-01T12:00:00.000000Z"
    assert recs[1]["event_time"] == "2026-03-01T12:00:00.250000Z"
    assert recs[99]["event_time"] == "2026-03-01T12:00:24.750000Z"
    assert all(r["card_id"].startswith("card-") for r in recs)
    assert all(0 <= r["hour"] <= 23 and r["amount"] > 0 for r in recs)


def test_default_start_is_fixed() -> None:
    # WHEN no start is given THEN the first event is at 2026-01-01T00:00:00Z
    assert generate_records(1)[0]["event_time"] == "2026-01-01T00:00:00.000000Z"


def test_frame_has_the_same_rows_typed_per_contract() -> None:
    # GIVEN records and a frame from the same arguments
    recs = generate_records(300, seed=5, scenario=Scenario.DRIFT, drift_at=0.3)
    frame = generate_frame(300, seed=5, scenario=Scenario.DRIFT, drift_at=0.3)
    # THEN columns and dtypes follow the contract and the values match the records
    assert list(frame.columns) == [f.name for f in CONTRACT.fields]
    assert str(frame["event_time"].dtype) == "datetime64[us, UTC]"
    assert frame["hour"].dtype == np.int64
    assert frame["amount"].dtype == np.float64
    assert frame["is_fraud"].dtype == bool
    assert frame["transaction_id"].tolist() == [r["transaction_id"] for r in recs]
    assert frame["amount"].tolist() == [r["amount"] for r in recs]
    iso = frame["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").tolist()
    assert iso == [r["event_time"] for r in recs]
    dist = [None if pd.isna(d) else d for d in frame["distance_from_home_km"]]
    assert dist == [r["distance_from_home_km"] for r in recs]


def test_distance_is_null_about_two_percent_and_fraud_rate_is_five_to_ten_percent() -> None:
    # GIVEN 20,000 stationary and 20,000 drift-only records
    before = generate_frame(20_000, seed=2)
    after = generate_frame(20_000, seed=2, scenario=Scenario.DRIFT, drift_at=0.0)
    # THEN ~2% of distances are null and the fraud rate stays within 5-10% in both worlds
    assert 0.015 < before["distance_from_home_km"].isna().mean() < 0.025
    assert 0.05 <= before["is_fraud"].mean() <= 0.10
    assert 0.05 <= after["is_fraud"].mean() <= 0.10


def test_drift_shifts_feature_distributions() -> None:
    # GIVEN a drift run split at 50%
    frame = generate_frame(20_000, seed=4, scenario=Scenario.DRIFT, drift_at=0.5)
    pre, post = frame.iloc[:10_000], frame.iloc[10_000:]
    # THEN amounts and distances rise, a new device and a new merchant category appear, and
    # foreign countries become much more common
    assert post["amount"].median() > 1.5 * pre["amount"].median()
    assert post["distance_from_home_km"].mean() > 3 * pre["distance_from_home_km"].mean()
    assert (pre["device"] == "wearable").sum() == 0
    assert (post["device"] == "wearable").mean() > 0.25
    assert (pre["merchant_category"] == "digital_goods").sum() == 0
    assert (post["merchant_category"] == "digital_goods").mean() > 0.15
    assert (pre["country"] != "US").mean() < 0.15
    assert (post["country"] != "US").mean() > 0.3


def test_stationary_never_drifts() -> None:
    # GIVEN a stationary run THEN no record comes from the drifted world
    frame = generate_frame(5_000, seed=4, scenario=Scenario.STATIONARY, drift_at=0.0)
    assert (frame["device"] == "wearable").sum() == 0


def _features(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "log_amount": np.log(frame["amount"]),
            "hour": frame["hour"],
            "distance": frame["distance_from_home_km"],
        }
    )
    for col in ("merchant_category", "device", "country"):
        for cat in PLAN.fields[col].values:
            out[f"{col}={cat}"] = (frame[col] == cat).astype(float)
    return out


def test_a_model_trained_before_the_drift_degrades_after_it_and_retraining_recovers() -> None:
    # GIVEN 40,000 records drifting at 50%, and a gradient boosting model trained on the first
    # 10,000 (stationary) rows
    frame = generate_frame(40_000, seed=3, scenario=Scenario.DRIFT, drift_at=0.5)
    pre_train, pre_test = frame.iloc[:10_000], frame.iloc[10_000:20_000]
    post_train, post_test = frame.iloc[20_000:30_000], frame.iloc[30_000:]
    model = HistGradientBoostingClassifier(random_state=0, max_iter=100)
    model.fit(_features(pre_train), pre_train["is_fraud"])

    def auc(m: HistGradientBoostingClassifier, part: pd.DataFrame) -> float:
        return float(roc_auc_score(part["is_fraud"], m.predict_proba(_features(part))[:, 1]))

    # THEN it scores well before the drift and clearly worse after it
    assert auc(model, pre_test) >= 0.85
    assert auc(model, post_test) < 0.7
    # AND a model retrained on post-drift rows recovers
    retrained = HistGradientBoostingClassifier(random_state=0, max_iter=100)
    retrained.fit(_features(post_train), post_train["is_fraud"])
    assert auc(retrained, post_test) >= 0.85


def test_encode_record_is_compact_utf8_json() -> None:
    assert encode_record({"a": "é", "b": 1}) == '{"a":"é","b":1}'.encode()


@pytest.mark.parametrize("kind", POISON_KINDS)
def test_each_poison_kind_has_its_defect(kind: str) -> None:
    # GIVEN a valid record and a seeded rng
    record = generate_records(1, seed=9)[0]
    rng = np.random.default_rng(0)
    # WHEN poisoned
    payload = make_poison(kind, rng, record)
    # THEN the payload has exactly that defect
    if kind == "non_utf8":
        with pytest.raises(UnicodeDecodeError):
            payload.decode("utf-8")
        return
    text = payload.decode("utf-8")
    if kind == "malformed_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        return
    doc = json.loads(text)
    if kind == "oversize":
        assert CONTRACT.max_record_bytes < len(payload) < 1024 * 1024
    elif kind == "missing_required":
        missing = set(record) - set(doc)
        assert len(missing) == 1 and CONTRACT.field(missing.pop()).required
    elif kind == "wrong_type":
        changed = [k for k in record if type(doc[k]) is not type(record[k]) or doc[k] != record[k]]
        assert len(changed) == 1


def test_unknown_poison_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown poison kind 'nope'"):
        make_poison("nope", np.random.default_rng(0), {})
