"""The demo end to end: real KCL workers, drift scenario, alarm → rule target, warehouse load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.aws import AwsClients
from infra import local
from infra.context import LocalState
from infra.demo import run_demo

pytestmark = pytest.mark.e2e


def test_drift_demo_alarms_delivers_the_event_and_loads_the_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a private state dir for the local stack
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path / "state"))
    try:
        # WHEN the drift demo runs (stationary first half, drifted second half, 1 % poison)
        r = run_demo(
            records=16_000, workers=2, scenario="drift", rate=500.0, keep_up=True, timeout=200
        )
        # THEN the lake holds every good record exactly once, every poison record a dead letter
        assert (r["missing"], r["duplicates"]) == (0, 0)
        assert r["lake_rows"] == r["produced"] - r["poison"] and r["dead_letters"] == r["poison"]
        # AND the warehouse equals the lake, without duplicates
        assert (r["warehouse_rows"], r["warehouse_duplicates"]) == (r["lake_rows"], 0)
        # AND the drift score rose, the alarm fired after the onset and not before
        assert r["max_drift_score"] > 0.2
        assert r["drift_alarm_s"] is not None and r["drift_alarm_s"] > r["drift_onset_s"]
        assert r["false_alarms"] == 0
        # AND the CloudWatch-shaped ALARM event reached the retrain rule's target queue
        state = LocalState.load(tmp_path / "state")
        assert state is not None
        sqs = AwsClients(endpoint_url=state.endpoint).client("sqs")
        msgs = sqs.receive_message(
            QueueUrl=state.outputs["RetrainQueueUrl"], MaxNumberOfMessages=10, WaitTimeSeconds=2
        ).get("Messages", [])
        events = [json.loads(m["Body"]) for m in msgs]
        alarm = [e for e in events if e["detail"]["alarmName"] == state.outputs["DriftAlarmName"]]
        assert alarm, events
        e = alarm[0]
        assert (e["source"], e["detail-type"]) == (
            "aws.cloudwatch",
            "CloudWatch Alarm State Change",
        )
        assert e["detail"]["state"]["value"] == "ALARM"
        assert e["detail"]["previousState"]["value"] in ("OK", "INSUFFICIENT_DATA")
        assert json.loads(e["detail"]["state"]["reasonData"])["threshold"] == 0.2
    finally:
        local.down(directory=tmp_path / "state")
