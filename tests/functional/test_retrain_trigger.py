"""`driftline retrain` against the emulator: a run started by hand is recorded as ``manual``, a
scheduled one (through the gate) as ``schedule`` — in the run's record, the registry's lineage,
the outcome and `driftline models`; and the promotion arms the quality alarm at the new champion's
holdout AUC minus the margin."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from etl.aws import AwsClients
from etl.contract import load_contract
from etl.synthetic import Scenario, generate_frame
from infra.cli import main
from retrain import registry
from tests.functional.retrain_lake import T0, write_lake
from tests.functional.template_alarm import create_quality_alarm
from tests.unit.test_retrain_scheduled import scheduled

pytestmark = pytest.mark.functional


def test_manual_and_scheduled_runs_record_their_trigger_and_a_promotion_arms_the_alarm(
    aws: AwsClients,
    emulator: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN 4 hours of records in the lake and the stack's quality alarm, unarmed
    contract = load_contract()
    aws.client("s3").create_bucket(Bucket="lake")
    frame = generate_frame(
        4_000, seed=12, scenario=Scenario.STATIONARY, start=T0, events_per_second=4_000 / 14_400
    )
    write_lake(frame, session=aws.session, endpoint=emulator, bucket="lake", contract=contract)
    cw = aws.client("cloudwatch")
    alarm, _ = create_quality_alarm(cw, stack="driftline")
    monkeypatch.chdir(tmp_path)
    for key, value in {
        "ENDPOINT_URL": emulator,
        "LAKE_BUCKET": "lake",
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "STATE_DIR": str(tmp_path / "state"),
        "RETRAIN_WINDOW_HOURS": "4",
        "RETRAIN_MIN_ROWS": "200",
        "RETRAIN_COOLDOWN_S": "0",
    }.items():
        monkeypatch.setenv(f"DRIFTLINE_{key}", value)

    def cli(*argv: str) -> dict[str, Any]:
        assert main(list(argv)) == 0
        return dict(json.loads(capsys.readouterr().out))

    at = (T0 + timedelta(hours=4)).isoformat()
    # WHEN a person runs `driftline retrain --now`
    first = cli("retrain", "--now", "--at", at, "--json")
    # THEN the run is promoted and recorded as manual
    assert (first["status"], first["trigger"], first["model_version"]) == ("promoted", "manual", 1)
    # AND the quality alarm's line is the champion's holdout AUC (as registered) minus 0.05
    sm = aws.client("sagemaker")
    [v1] = registry.list_versions(sm, "driftline-card-transactions")
    assert v1.lineage["trigger"] == "manual"
    threshold = cw.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["Threshold"]
    assert (
        threshold == round(v1.metrics["roc_auc"] - 0.05, 6) == first["quality_alarm"]["threshold"]
    )
    # WHEN the scheduled safety net's event goes through the gate
    path = tmp_path / "scheduled.json"
    path.write_text(json.dumps(scheduled("sched-1")))
    second = cli("retrain", "--event", str(path), "--at", at, "--json")
    # THEN it ran and is recorded as a scheduled run, in the outcome and the registry
    assert second["status"] == "ran" and second["outcome"]["trigger"] == "schedule"
    versions = registry.list_versions(sm, "driftline-card-transactions")
    assert [v.lineage["trigger"] for v in versions] == ["manual", "schedule"]
    # AND each run's record (run.json, the console's runs list) names its trigger
    s3 = aws.client("s3")
    listed = s3.list_objects_v2(Bucket="lake", Prefix="retrain/")["Contents"]
    records = [
        json.loads(s3.get_object(Bucket="lake", Key=o["Key"])["Body"].read())
        for o in listed
        if o["Key"].endswith("/run.json")
    ]
    assert sorted(r["trigger"] for r in records) == ["manual", "schedule"]
    # AND `driftline models` shows it per version
    rows = cli("models", "--json")["versions"]
    assert [(r["version"], r["trigger"]) for r in rows] == [(1, "manual"), (2, "schedule")]
