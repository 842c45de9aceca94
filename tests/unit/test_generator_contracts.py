"""The synthetic generator over every shipped contract and one written here: records the real
decoder accepts, bounds and allowed values kept, a learnable label, a drift, every poison kind."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import r2_score, roc_auc_score
from threadpoolctl import threadpool_limits

from etl.contract import Contract, FieldType, Task, load_contract, parse_contract
from etl.exceptions import ContractError
from etl.generator import plan_for
from etl.producer import build_payloads, poison_plan
from etl.records import RawRecord, RecordDecoder
from etl.synthetic import POISON_KINDS, Scenario, generate_frame, generate_records

EXAMPLES = Path(__file__).resolve().parents[2] / "etl" / "contracts"

#: A contract nobody here wrote a generator for: no [generator] table at all; an int id, an
#: optional (absent, never null) float, a string feature without allowed values, a regression label.
HAND_WRITTEN = {
    "name": "bike_rentals",
    "partition_key": "station",
    "fields": [
        {"name": "rental_no", "type": "int", "role": "id"},
        {"name": "started", "type": "timestamp", "role": "event_time"},
        {"name": "station", "type": "string", "role": "attribute"},
        {"name": "minutes", "type": "float", "role": "feature", "min": 0.0, "max": 600.0},
        {"name": "bike_kind", "type": "string", "role": "feature"},
        {"name": "member", "type": "bool", "role": "feature"},
        {"name": "riders", "type": "int", "role": "feature", "min": 1, "max": 4},
        {"name": "temp_c", "type": "float", "role": "feature", "required": False},
        {"name": "booked_at", "type": "timestamp", "role": "attribute", "nullable": True},
        {"name": "fare", "type": "float", "role": "label", "nullable": True},
    ],
}


def _contracts() -> list[Contract]:
    return [
        load_contract(),
        load_contract(EXAMPLES / "sensor_readings.toml"),
        parse_contract(HAND_WRITTEN, "hand-written"),
    ]


CONTRACTS = _contracts()
IDS = [c.name for c in CONTRACTS]


def _decode(contract: Contract, payloads: list[tuple[bytes, str]]) -> object:
    raw = [RawRecord(data, str(i + 1), key, None) for i, (data, key) in enumerate(payloads)]
    return RecordDecoder(contract).decode(
        raw, shard_id="shardId-000000000000", ingest_time=datetime(2026, 1, 2, tzinfo=UTC)
    )


@pytest.mark.parametrize("contract", CONTRACTS, ids=IDS)
def test_every_generated_record_passes_the_real_decoder_and_respects_the_contract(
    contract: Contract,
) -> None:
    # GIVEN 2,000 drifting records of the contract
    recs = generate_records(2_000, seed=3, scenario=Scenario.DRIFT, contract=contract)
    # WHEN the record decoder of the consumers validates them
    batch = _decode(contract, build_payloads(recs, {}, seed=3, contract=contract))
    # THEN every one is a good row (none dead-lettered) and ids are unique
    assert batch.dead_letters == [] and batch.table.num_rows == 2_000  # type: ignore[attr-defined]
    ids = [r[contract.id_field.name] for r in recs]
    assert len(set(ids)) == 2_000
    # AND numbers stay in bounds and strings among the allowed values
    frame = generate_frame(2_000, seed=3, scenario=Scenario.DRIFT, contract=contract)
    for f in contract.fields:
        col = frame[f.name].dropna()
        if f.min is not None:
            assert col.min() >= f.min, f.name
        if f.max is not None:
            assert col.max() <= f.max, f.name
        if f.allowed is not None:
            assert set(col) <= set(f.allowed), f.name
        if f.required and not f.nullable:
            assert frame[f.name].notna().all(), f.name


@pytest.mark.parametrize("contract", CONTRACTS, ids=IDS)
def test_the_same_seed_gives_the_same_records_and_another_seed_other_ids(
    contract: Contract,
) -> None:
    a = generate_records(300, seed=11, scenario=Scenario.DRIFT, contract=contract)
    b = generate_records(300, seed=11, scenario=Scenario.DRIFT, contract=contract)
    c = generate_records(300, seed=12, scenario=Scenario.DRIFT, contract=contract)
    idf = contract.id_field.name
    assert a == b
    assert {r[idf] for r in a}.isdisjoint({r[idf] for r in c})


def _encode(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for f in contract.features:
        if f.type in (FieldType.INT, FieldType.FLOAT):
            out[f.name] = frame[f.name].astype("float64")
        else:
            out[f.name] = frame[f.name].astype(str).astype("category").cat.codes
    return out


def _fit_and_score(contract: Contract, train: pd.DataFrame, test: pd.DataFrame) -> float:
    # one thread: on a loaded shared machine OpenMP's spinning threads cost minutes
    with threadpool_limits(1):
        return _fit_and_score_1(contract, train, test)


def _fit_and_score_1(contract: Contract, train: pd.DataFrame, test: pd.DataFrame) -> float:
    label = contract.label
    assert label is not None
    if contract.task is Task.REGRESSION:
        reg = HistGradientBoostingRegressor(random_state=0, max_iter=60)
        reg.fit(_encode(train, contract), train[label.name])
        return float(r2_score(test[label.name], reg.predict(_encode(test, contract))))
    clf = HistGradientBoostingClassifier(random_state=0, max_iter=60)
    clf.fit(_encode(train, contract), train[label.name].astype(bool))
    scores = clf.predict_proba(_encode(test, contract))[:, 1]
    return float(roc_auc_score(test[label.name].astype(bool), scores))


@pytest.mark.parametrize("contract", CONTRACTS, ids=IDS)
def test_the_label_is_learnable_and_the_drift_changes_its_relation(contract: Contract) -> None:
    # GIVEN 16,000 records drifting at half way
    frame = generate_frame(16_000, seed=5, scenario=Scenario.DRIFT, drift_at=0.5, contract=contract)
    pre, post = frame.iloc[:8_000], frame.iloc[8_000:]
    # THEN a model learns the stationary label (ROC AUC, or R² for a regression) ...
    learnt = _fit_and_score(contract, pre.iloc[:5_000], pre.iloc[5_000:])
    assert learnt >= 0.8
    # AND scores clearly worse after the drift, while one retrained on drifted rows recovers
    stale = _fit_and_score(contract, pre.iloc[:5_000], post.iloc[5_000:])
    fresh = _fit_and_score(contract, post.iloc[:5_000], post.iloc[5_000:])
    assert stale < learnt - 0.2 and fresh >= 0.8


@pytest.mark.parametrize("contract", CONTRACTS, ids=IDS)
def test_the_drift_moves_numeric_features_and_categorical_mixes(contract: Contract) -> None:
    # GIVEN a stationary run and a drift-only run of the same size
    before = generate_frame(10_000, seed=8, contract=contract)
    after = generate_frame(10_000, seed=8, scenario=Scenario.DRIFT, drift_at=0.0, contract=contract)
    plan = plan_for(contract)
    for f in contract.features:
        a, b = before[f.name].dropna(), after[f.name].dropna()
        if plan.fields[f.name].dist == "choice":
            # THEN every categorical mix changes: total variation distance > 0.1
            pa_, pb_ = a.value_counts(normalize=True), b.value_counts(normalize=True)
            tvd = 0.5 * float(pa_.sub(pb_, fill_value=0.0).abs().sum())
            assert tvd > 0.1, f.name
        elif f.type in (FieldType.INT, FieldType.FLOAT):
            # AND every other numeric feature's mean moves by at least a tenth of its spread
            spread = float(a.std()) or 1.0
            assert abs(float(b.mean()) - float(a.mean())) > 0.1 * spread, f.name


@pytest.mark.parametrize("contract", CONTRACTS, ids=IDS)
def test_poison_of_every_kind_reaches_the_dead_letters_with_its_reason(contract: Contract) -> None:
    # GIVEN 500 records, 10 % poison cycling through every kind
    recs = generate_records(500, seed=4, contract=contract)
    plan = poison_plan(500, 0.1, seed=4)
    assert Counter(plan.values()) == {k: 10 for k in POISON_KINDS}
    # WHEN the decoder validates the payloads
    batch = _decode(contract, build_payloads(recs, plan, seed=4, contract=contract))
    # THEN every good record is a row and every poison record a dead letter of its own kind
    assert batch.table.num_rows == 450  # type: ignore[attr-defined]
    reasons = Counter(str(d.reason) for d in batch.dead_letters)  # type: ignore[attr-defined]
    assert reasons == {k: 10 for k in POISON_KINDS}


def test_a_contract_without_a_label_still_generates_a_stream() -> None:
    # GIVEN the hand-written contract with its label turned into an attribute
    doc = {**HAND_WRITTEN, "fields": [dict(f) for f in HAND_WRITTEN["fields"]]}  # type: ignore[arg-type]
    doc["fields"][-1]["role"] = "attribute"
    contract = parse_contract(doc, "no-label")
    # THEN it has no task, and records still come out (the data path needs no label)
    assert contract.label is None and contract.task is None
    assert len(generate_records(10, seed=1, contract=contract)) == 10


@pytest.mark.parametrize(
    ("generator", "message"),
    [
        ({"fields": {"nope": {}}}, "generator.fields: ['nope'] are not fields"),
        ({"fields": {"minutes": {"dist": "zipf"}}}, "generator.fields.minutes.dist: got 'zipf'"),
        ({"fields": {"minutes": {"dist": "normal", "mean": 1}}}, "minutes.sd: expected a finite"),
        ({"fields": {"bike_kind": {"values": ["a"], "weights": [1, 2]}}}, "expected 1 numbers"),
        ({"fields": {"riders": {"values": [9]}}}, "9 is outside [1.0, 4.0]"),
        ({"fields": {"minutes": {"null_rate": 0.1}}}, "0 for a required, non-nullable field"),
        ({"label": {"terms": [{"feature": "bike_kind", "weight": 1}]}}, "not a numeric field"),
        ({"label": {"terms": [{"when": [["member", "~", True]], "weight": 1}]}}, "when[0]"),
        ({"colour": "red"}, "generator: unknown keys ['colour']"),
    ],
)
def test_a_bad_generator_table_fails_naming_the_key(
    generator: dict[str, object], message: str
) -> None:
    contract = parse_contract({**HAND_WRITTEN, "generator": generator}, "hand-written")
    with pytest.raises(ContractError) as err:
        plan_for(contract)
    assert message in str(err.value)


def test_shipped_contracts_declare_their_task() -> None:
    assert [c.task for c in CONTRACTS] == [
        Task.BINARY_CLASSIFICATION,
        Task.BINARY_CLASSIFICATION,
        Task.REGRESSION,
    ]
    assert float(np.mean(generate_frame(5_000, seed=1, contract=CONTRACTS[1])["failed_within_1h"]))
