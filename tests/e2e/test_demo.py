"""The demo end to end, through real KCL workers: the closed drift → retrain → redeploy loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import local
from infra.alarm_evaluator import read_history
from infra.demo import run_demo

pytestmark = pytest.mark.e2e


def test_drift_demo_closes_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a private state dir for the local stack
    state = tmp_path / "state"
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(state))
    try:
        # WHEN the drift demo runs: stationary history, first champion, then a drifted stream
        r = run_demo(records=5_000, workers=2, scenario="drift", rate=500.0, keep_up=True)
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
        states = [t.state for t in read_history(state) if t.alarm_name.endswith("drift-score")]
        assert "ALARM" in states and states[-1] == "OK"
    finally:
        local.down(directory=state)


def test_two_demos_in_a_row_each_see_a_warehouse_equal_to_their_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a private state dir
    state = tmp_path / "state"
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(state))
    try:
        for seed in (3, 4):
            # WHEN a stationary demo runs (up → produce → consume → load → down), twice in a row
            r = run_demo(records=1_500, workers=1, scenario="stationary", rate=500.0, seed=seed)
            # THEN each run's warehouse holds exactly that run's lake: the state went with `down`
            assert (r["missing"], r["duplicates"]) == (0, 0)
            assert r["lake_rows"] == r["produced"] - r["poison"]
            assert (r["warehouse_rows"], r["warehouse_duplicates"]) == (r["lake_rows"], 0)
            assert not (state / "postgres" / "data").exists()
    finally:
        local.down(directory=state)
