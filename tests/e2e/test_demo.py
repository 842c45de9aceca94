"""The demo end to end, through real KCL workers, for the shipped contracts and one written by
hand in the test: exactly-once lake and warehouse, poison in the dead letters, and the closed
drift → retrain → redeploy loop."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from infra import local
from infra.alarm_evaluator import read_history
from infra.demo import DemoOptions, run_demo

if TYPE_CHECKING:
    from tests.e2e.conftest import DriftDemo

pytestmark = pytest.mark.e2e

CONTRACTS = Path(__file__).resolve().parents[2] / "etl" / "contracts"
SENSOR = str(CONTRACTS / "sensor_readings.toml")

#: A contract of a domain nobody here wrote a generator for: no [generator] table, an int id, an
#: optional float, an unconstrained string feature, a bool, a regression label.
HAND_WRITTEN = """
name = "bike_rentals"
partition_key = "station"
[[fields]]
name = "rental_no"
type = "int"
role = "id"
[[fields]]
name = "started"
type = "timestamp"
role = "event_time"
[[fields]]
name = "station"
type = "string"
role = "attribute"
[[fields]]
name = "minutes"
type = "float"
role = "feature"
min = 0.0
max = 600.0
[[fields]]
name = "bike_kind"
type = "string"
role = "feature"
[[fields]]
name = "member"
type = "bool"
role = "feature"
[[fields]]
name = "temp_c"
type = "float"
role = "feature"
required = false
[[fields]]
name = "fare"
type = "float"
role = "label"
"""


#: ~5 min on a quiet VM; 19 min measured on a heavily shared one (load 25)
DRIFT_DEMO_TIMEOUT = 1_800


@pytest.mark.timeout(DRIFT_DEMO_TIMEOUT)
def test_drift_demo_closes_the_loop(drift_demo: DriftDemo) -> None:
    # GIVEN the drift demo on the card contract (run once per session, see conftest.drift_demo:
    # the console's browser test looks at the same stack)
    # WHEN it ran: stationary history, first champion, then a drifted stream
    # THEN the loop closed
    assert_loop_closed(drift_demo.result, drift_demo.history, "card-transactions")


@pytest.mark.parametrize("contract", ["sensor", "hand_written"])
def test_stationary_demo_is_exactly_once_for_any_contract(
    contract: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a private state dir and a contract: the shipped sensor example, or one written here
    state = tmp_path / "state"
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(state))
    path = SENSOR
    if contract == "hand_written":
        path = str(tmp_path / "bike_rentals.toml")
        Path(path).write_text(HAND_WRITTEN)
    # WHEN the stationary demo runs on it
    r = run_demo(DemoOptions(records=2_000, workers=2, rate=500.0, contract_path=path))
    # THEN every good record is in the lake once, and every poison record a dead letter
    assert r["contract"] == ("sensor_readings" if contract == "sensor" else "bike_rentals")
    assert (r["missing"], r["duplicates"]) == (0, 0)
    assert r["lake_rows"] == r["produced"] - r["poison"] == 1_980
    assert r["dead_letter_reasons"] == r["poison_by_kind"]
    # AND the warehouse equals the lake, without duplicates
    assert (r["warehouse_rows"], r["warehouse_duplicates"]) == (1_980, 0)
    # AND nothing is left running
    assert local.status(directory=state) == {"up": False}


@pytest.mark.timeout(DRIFT_DEMO_TIMEOUT)
def test_drift_demo_closes_the_loop_for_the_sensor_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a private state dir for the local stack
    state = tmp_path / "state"
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(state))
    try:
        # WHEN the drift demo runs on the sensor contract
        r = run_demo(
            DemoOptions(
                records=5_000,
                workers=2,
                scenario="drift",
                rate=500.0,
                keep_up=True,
                contract_path=SENSOR,
            )
        )
        # THEN the loop closed
        assert_loop_closed(r, read_history(state), "sensor-readings")
    finally:
        local.down(directory=state)


def assert_loop_closed(r: dict[str, Any], history: list[Any], model: str) -> None:
    # THEN the model is named after the contract
    assert r["model_name"] == model
    # THEN the lake holds every good record once, every poison record is a dead letter
    assert (r["missing"], r["duplicates"]) == (0, 0)
    assert r["lake_rows"] == r["produced"] - r["poison"]
    assert r["dead_letters"] == r["poison"]
    # AND the warehouse equals the lake, without duplicates
    assert (r["warehouse_rows"], r["warehouse_duplicates"]) == (r["lake_rows"], 0)
    # AND the drift score rose, the alarm fired after the onset and never before
    assert r["max_drift_score"] > 1.0 and r["false_alarms"] == 0
    assert r["drift_alarm_s"] is not None and r["drift_alarm_s"] >= r["drift_onset_s"]
    # AND exactly one retrain ran, on the alarm's event, and its challenger was promoted
    assert r["retrain_status"] == ["ran"] and r["retrain_errors"] == []
    # (the event is on the bus before the alarm's new state is readable: compare loosely)
    assert r["retrain_started_s"] >= r["drift_alarm_s"] - 5.0
    assert r["metric_challenger"] > r["metric_champion"] + 0.01
    # AND the served model recovers on post-drift data
    assert r["roc_auc_after_drift_before_retrain"] < 0.7
    assert r["roc_auc_after_drift_after_retrain"] >= 0.85
    # AND no request failed while the model was switched under >= 100 requests/s
    assert r["requests_during_swap"] >= 1_000 and r["failed_requests_during_swap"] == 0
    # AND with the new baseline the drift score fell and the alarm went back to OK
    assert r["last_drift_score"] < 1.0
    assert r["alarm_ok_again_s"] is not None and r["alarm_ok_again_s"] > r["deployed_s"]
    # AND the evaluator's history records the transitions (ALARM, then OK)
    states = [t.state for t in history if t.alarm_name.endswith("drift-score")]
    assert "ALARM" in states and states[-1] == "OK"


def test_two_demos_in_a_row_each_see_a_warehouse_equal_to_their_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a private state dir
    state = tmp_path / "state"
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(state))
    try:
        for seed in (3, 4):
            # WHEN a stationary demo runs (up → produce → consume → load → down), twice in a row
            r = run_demo(
                DemoOptions(records=1_500, workers=1, scenario="stationary", rate=500.0, seed=seed)
            )
            # THEN each run's warehouse holds exactly that run's lake: the state went with `down`
            assert (r["missing"], r["duplicates"]) == (0, 0)
            assert r["lake_rows"] == r["produced"] - r["poison"]
            assert (r["warehouse_rows"], r["warehouse_duplicates"]) == (r["lake_rows"], 0)
            assert not (state / "postgres" / "data").exists()
    finally:
        local.down(directory=state)


#: ~2.5 min on a quiet VM (stack up, KCL start, history, champion, ~80 s of stream)
CONCEPT_DEMO_TIMEOUT = 900


@pytest.mark.timeout(CONCEPT_DEMO_TIMEOUT)
def test_concept_demo_fires_the_quality_alarm_and_not_the_drift_alarm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a private state dir for the local stack
    state = tmp_path / "state"
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(state))
    # WHEN the concept demo runs on the card contract: stationary history, champion, quality
    # alarm armed, then records whose features are unchanged but whose labels follow a new
    # relation, consumed by real KCL workers that score every batch with the served model
    r = run_demo(DemoOptions(records=5_000, workers=2, scenario="concept", rate=500.0))
    # THEN the lake holds every good record once
    assert (r["missing"], r["duplicates"]) == (0, 0)
    assert r["lake_rows"] == r["produced"] - r["poison"]
    # AND the drift alarm never left OK: the inputs did not drift
    assert (r["drift_alarms"], r["drift_alarm_state"]) == (0, "OK")
    assert r["max_drift_score"] is not None and r["max_drift_score"] < 1.0
    transitions = r["alarm_transitions"]
    assert not [t for t in transitions if t[1].endswith("drift-score") and t[3] == "ALARM"]
    # AND the quality windows' AUC fell below the armed threshold and the quality alarm fired
    # after the first changed labels arrived (every record carried its label: coverage 1)
    assert r["champion_holdout_auc"] >= 0.8
    assert r["stream_auc_worst"] < r["quality_threshold"] - 0.3
    assert r["quality_alarm_s"] is not None and r["quality_alarm_s"] > 0
    assert r["label_coverage"] == 1.0
    # AND exactly one retrain ran, recorded with trigger "quality", and its challenger won
    assert r["retrain_status"] == ["ran"] and r["retrain_errors"] == []
    assert r["retrain_trigger"] == "quality"
    assert r["metric_challenger"] > r["metric_champion"] + 0.3
    # AND the served model lost its AUC at the change and the promoted one restored it
    assert r["auc_at_change"] < 0.6
    assert r["auc_after"] >= r["auc_before"] - 0.05
    # AND on the stream: the last quality window is above the threshold, the alarm OK again
    assert r["stream_auc_last"] >= r["quality_threshold"]
    assert r["quality_alarm_state"] == "OK" and r["quality_ok_again_s"] > r["deployed_s"]
    quality = [t[3] for t in transitions if t[1].endswith("quality-auc")]
    assert "ALARM" in quality and quality[-1] == "OK"
    # AND nothing is left running
    assert local.status(directory=state) == {"up": False}
