"""The concept scenario of the generator: the inputs keep their distribution (the drift window
stays quiet over many windows), the label's relation changes (a model trained before ranks the
later records clearly worse; one retrained on them recovers). Models are the product's own
(``retrain.fit``); AUC is ours (``etl.quality``) held to scikit-learn's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from etl.contract import Contract, Task, load_contract, parse_contract
from etl.drift import DriftWindow
from etl.exceptions import ContractError
from etl.generator import plan_for
from etl.profile import build_profile
from etl.quality import new_window
from etl.synthetic import Scenario, generate_frame
from retrain.fit import _hyperparameters, fit
from retrain.inference import LoadedModel
from retrain.train import score_frame, spec_of

EXAMPLES = Path(__file__).resolve().parents[2] / "etl" / "contracts"
CARD = load_contract()
SENSOR = load_contract(EXAMPLES / "sensor_readings.toml")
#: No [generator] table at all: the concept relation is the default drift relation.
HAND_WRITTEN = parse_contract(
    {
        "name": "plain",
        "partition_key": "k",
        "fields": [
            {"name": "rid", "type": "string", "role": "id"},
            {"name": "t", "type": "timestamp", "role": "event_time"},
            {"name": "k", "type": "string", "role": "attribute"},
            {"name": "x", "type": "float", "role": "feature", "min": 0.0, "max": 100.0},
            {"name": "kind", "type": "string", "role": "feature"},
            {"name": "z", "type": "float", "role": "feature"},
            {"name": "y", "type": "bool", "role": "label"},
        ],
    },
    "hand-written",
)
BINARY = [CARD, SENSOR, HAND_WRITTEN]
IDS = [c.name for c in BINARY]
WINDOW_ROWS = 500


@pytest.mark.parametrize("contract", BINARY, ids=IDS)
def test_the_features_are_the_stationary_ones_and_only_the_label_changes(
    contract: Contract,
) -> None:
    # GIVEN a stationary run and a concept run of the same seed, changing at half way
    before = generate_frame(4_000, seed=9, contract=contract)
    concept = generate_frame(
        4_000, seed=9, scenario=Scenario.CONCEPT, drift_at=0.5, contract=contract
    )
    label = contract.label
    assert label is not None
    # THEN every non-label column is identical, row for row
    others = [f.name for f in contract.fields if f.name != label.name]
    pd.testing.assert_frame_equal(before[others], concept[others])
    # AND the label is the stationary one before the change and another one after it
    assert before[label.name].iloc[:2_000].equals(concept[label.name].iloc[:2_000])
    assert (before[label.name].iloc[2_000:] != concept[label.name].iloc[2_000:]).mean() > 0.05


def _scores(contract: Contract, rows: int, seed: int, scenario: Scenario) -> list[float | None]:
    """Each window's DriftScore over ``rows`` records of ``scenario`` (all after the change),
    against the baseline of 20,000 stationary records; CUSUMs carried across windows."""
    base = build_profile(generate_frame(20_000, seed=1, contract=contract), contract)
    window = DriftWindow(base)
    frame = generate_frame(rows, seed=seed, scenario=scenario, drift_at=0.0, contract=contract)
    out = []
    for i in range(0, rows, WINDOW_ROWS):
        window.update(frame.iloc[i : i + WINDOW_ROWS])
        out.append(window.close(min_rows=200).drift_score)
    return out


def _alarms(scores: list[float | None], m: int = 2, n: int = 3) -> int:
    """Windows at which the drift alarm's rule (M of N breaching, score > 1) holds."""
    breach = [s is not None and s > 1.0 for s in scores]
    return sum(sum(breach[max(0, i - n + 1) : i + 1]) >= m for i in range(len(breach)))


@pytest.mark.parametrize("contract", BINARY, ids=IDS)
def test_the_drift_window_stays_quiet_over_many_concept_windows(contract: Contract) -> None:
    # GIVEN 60 windows of 500 concept records against a stationary baseline
    concept = _scores(contract, 30_000, seed=21, scenario=Scenario.CONCEPT)
    # THEN every window is scored, the drift alarm's rule (2 of 3 above 1) never holds and
    # breaching windows stay rare (the calibrated false-alarm rate)
    assert all(s is not None for s in concept)
    assert _alarms(concept) == 0
    assert sum(s is not None and s > 1.0 for s in concept) <= 3
    # AND the same detector does see an input drift (the check can fail)
    drifted = _scores(contract, 3_000, seed=21, scenario=Scenario.DRIFT)
    assert _alarms(drifted) >= 4


def _auc(contract: Contract, model: LoadedModel, part: pd.DataFrame) -> float:
    """Our quality window's AUC of the model's scores on ``part``, held to scikit-learn's."""
    label = contract.label
    assert label is not None
    scores = np.asarray(score_frame(model, part), dtype=np.float64)
    y = part[label.name].astype(bool).to_numpy()
    window = new_window(regression=False)
    window.update(scores, y.astype(np.float64))
    ours = window.figures().auc
    assert ours is not None
    assert ours == pytest.approx(float(roc_auc_score(y, scores)), abs=1e-12)
    return ours


@pytest.mark.parametrize("contract", [CARD, SENSOR], ids=["card", "sensor"])
def test_a_fixed_model_loses_its_auc_after_the_change_and_a_retrained_one_recovers(
    contract: Contract,
) -> None:
    # GIVEN 24,000 concept records changing at half way, and the product's model trained on
    # the first 8,000 (before the change)
    frame = generate_frame(
        24_000, seed=5, scenario=Scenario.CONCEPT, drift_at=0.5, contract=contract
    )
    pre, post = frame.iloc[:12_000], frame.iloc[12_000:]
    spec = spec_of(contract)
    with threadpool_limits(1):
        hp = _hyperparameters(None, "test")  # the training job's defaults
        model, _ = fit(pre.iloc[:8_000], spec, hp)
        retrained, _ = fit(post.iloc[:8_000], spec, hp)
    # THEN it ranks the held-out rows before the change well, and those after it clearly worse
    before = _auc(contract, model, pre.iloc[8_000:])
    stale = _auc(contract, model, post.iloc[8_000:])
    assert before >= 0.8
    assert stale < 0.6
    # AND a model retrained after the change gets back to about the AUC before it
    fresh = _auc(contract, retrained, post.iloc[8_000:])
    assert fresh >= before - 0.03


def test_a_contract_without_a_concept_table_uses_its_drift_relation() -> None:
    # GIVEN the hand-written contract (defaults) THEN its concept relation is the drift one
    lp = plan_for(HAND_WRITTEN).label
    assert lp is not None
    assert lp.relation(drifted=False, concept=True) == (lp.drift_intercept, lp.drift_terms)
    assert lp.relation(drifted=False, concept=True) != (lp.intercept, lp.terms)
    # AND the card contract's own concept table is used
    card = plan_for(CARD).label
    assert card is not None and card.concept_terms is not None
    assert card.relation(drifted=False, concept=True)[0] == -5.6


def test_an_unknown_key_in_the_concept_table_fails_naming_it() -> None:
    doc = CARD.to_dict()
    doc["generator"] = {"label": {"concept": {"intercept": -2.0, "weights": []}}}
    with pytest.raises(
        ContractError, match=r"generator\.label\.concept: unknown keys \['weights'\]"
    ):
        plan_for(parse_contract(doc, "t"))


def test_the_regression_label_changes_too() -> None:
    # GIVEN a regression contract (no generator table) THEN the concept scenario changes the
    # relation of its label to the features, not the features
    doc = HAND_WRITTEN.to_dict()
    for f in doc["fields"]:
        if f["name"] == "y":
            f["type"] = "float"
    doc["task"] = "regression"
    reg = parse_contract(doc, "reg")
    assert reg.task is Task.REGRESSION
    a = generate_frame(2_000, seed=3, contract=reg)
    b = generate_frame(2_000, seed=3, scenario=Scenario.CONCEPT, drift_at=0.0, contract=reg)
    assert a["x"].equals(b["x"]) and a["kind"].equals(b["kind"])
    assert np.corrcoef(a["y"], b["y"])[0, 1] < 0.5
