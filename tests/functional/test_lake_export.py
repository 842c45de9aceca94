"""The monitoring history exported into the lake, and the two shared queries over it: drift metrics
and alarm transitions made by the local alarm evaluator from real datapoints, model versions in
the emulator's SageMaker registry; exported, queried on DuckDB, exported again (nothing twice)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from etl.analytics import HISTORY_QUERIES, Engine, render, sql_file
from etl.aws import AwsClients
from etl.contract import load_contract
from etl.export import ExportTable, object_key, watermark_key
from etl.query import LakeQuery
from etl.settings import Settings
from infra.alarm_evaluator import AlarmEvaluator
from infra.analytics import exporter_for
from infra.cli import main
from retrain import registry

pytestmark = pytest.mark.functional

BUCKET = "lake-bucket"
STACK = "s"
STREAM = [{"Name": "Stream", "Value": "s-events"}]
GROUP = "s-model"
#: Drift score per minute: calm, a drift (2 of 3 above 0.2 → ALARM), calm again (→ OK).
SCORES = [0.05, 0.06, 0.31, 0.35, 0.4, 0.3, 0.05, 0.04, 0.03, 0.02]


def _settings(emulator: str) -> Settings:
    return Settings(
        stack_name=STACK,
        endpoint_url=emulator,
        lake_bucket=BUCKET,
        stream_name="s-events",
        model_package_group=GROUP,
    )


def _drift(aws: AwsClients, state_dir: Path, t0: dt.datetime) -> list[Any]:
    """The stack's drift alarm, SCORES (and a feature's PSI) per minute from t0, the evaluator
    run once a minute: real transitions, recorded in ``state_dir``."""
    cw = aws.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName=f"{STACK}-drift-score",
        Namespace="Driftline",
        MetricName="DriftScore",
        Dimensions=STREAM,
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=3,
        DatapointsToAlarm=2,
        Threshold=0.2,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )
    transitions = []
    for i, score in enumerate(SCORES):
        at = t0 + dt.timedelta(minutes=i, seconds=20)
        psi = [{"Name": "Feature", "Value": "amount"}, *STREAM]
        cw.put_metric_data(
            Namespace="Driftline",
            MetricData=[
                {"MetricName": "DriftScore", "Dimensions": STREAM, "Value": score, "Timestamp": at},
                {"MetricName": "PSI", "Dimensions": psi, "Value": score / 2, "Timestamp": at},
            ],
        )
        now = t0 + dt.timedelta(minutes=i + 1, seconds=5)
        evaluator = AlarmEvaluator(cw, aws.client("events"), state_dir=state_dir)
        transitions += evaluator.evaluate_once(now)
    return transitions


def _models(aws: AwsClients) -> None:
    """v1 approved and promoted, v2 rejected by the retrain decision."""
    sm = aws.client("sagemaker")
    registry.ensure_group(sm, GROUP)
    for n, (auc, status) in enumerate(
        [(0.81, registry.Approval.APPROVED), (0.78, registry.Approval.REJECTED)]
    ):
        version = registry.register(
            sm,
            GROUP,
            registry.Candidate(
                model_data_url=f"s3://{BUCKET}/models/{n}/model.tar.gz",
                image_uri="img",
                metrics={"auc": auc, "log_loss": 0.4 + n / 10},
                lineage={"run_id": f"run-{n}"},
                champion_metrics={"auc": 0.81} if n else None,
            ),
        )
        registry.set_status(
            sm,
            version,
            status,
            reason="promoted" if n == 0 else "auc below the champion's",
            properties={"promoted_at": "1767600000"} if n == 0 else None,
        )


def _query(aws: AwsClients, name: str) -> list[dict[str, Any]]:
    q = LakeQuery(BUCKET, clients=aws, contract=load_contract())
    try:
        result = q.run_file(name)
    finally:
        q.close()
    return [dict(zip(result.columns, r, strict=True)) for r in result.rows]


def test_exported_history_answers_the_two_queries_and_a_rerun_writes_nothing_twice(
    aws: AwsClients, emulator: str, tmp_path: Path
) -> None:
    # GIVEN real alarm transitions from real datapoints, and two registered model versions
    aws.client("s3").create_bucket(Bucket=BUCKET)
    t0 = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=20)
    transitions = _drift(aws, tmp_path, t0)
    assert [(t.previous_state, t.state) for t in transitions] == [("OK", "ALARM"), ("ALARM", "OK")]
    _models(aws)
    exporter = exporter_for(_settings(emulator), aws, tmp_path)

    # WHEN the history is exported
    first = exporter.run()

    # THEN each table has today's object (the data is from the last 20 minutes)
    assert all(len(days) >= 1 for days in first.written.values()), first.written
    assert first.rows[ExportTable.ALARM_TRANSITIONS] == 2
    assert first.rows[ExportTable.MODEL_VERSIONS] == 4  # 2 versions x 2 metrics

    # AND each drift score minute carries the alarm state in force at that minute
    rows = _query(aws, "drift_alarm_history")
    scores = [r for r in rows if r["metric"] == "DriftScore"]
    assert [round(r["value"], 2) for r in scores] == SCORES
    changes = sorted((dt.datetime.fromisoformat(t.time), t.state) for t in transitions)
    for r in scores:
        in_force = [state for at, state in changes if at <= r["metric_time"]]
        assert r["alarm_state"] == (in_force[-1] if in_force else None), r
        assert r["alarm_name"] == (f"{STACK}-drift-score" if in_force else None)
    assert {r["alarm_state"] for r in scores} == {None, "ALARM", "OK"}
    # AND the per-feature metric is there, joined to no alarm (none watches it)
    psi = [r for r in rows if r["metric"] == "PSI"]
    assert [r["feature"] for r in psi] == ["amount"] * len(SCORES)
    assert {r["alarm_name"] for r in psi} == {None}

    # AND the model versions come in order with status, decision and the change per metric
    versions = _query(aws, "model_versions_over_time")
    assert [(r["version"], r["metric"], r["status"]) for r in versions] == [
        (1, "auc", "Approved"),
        (1, "log_loss", "Approved"),
        (2, "auc", "Rejected"),
        (2, "log_loss", "Rejected"),
    ]
    v2_auc = versions[2]
    assert v2_auc["champion_value"] == pytest.approx(0.81)
    assert v2_auc["change_from_previous"] == pytest.approx(-0.03)
    assert v2_auc["decision"] == "auc below the champion's"
    assert versions[0]["promoted_at"] == dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)

    # WHEN the export runs again with nothing new
    again = exporter.run()
    # THEN it writes no object, and the queries return the same rows
    assert again.written == {t: [] for t in first.written}
    assert _query(aws, "drift_alarm_history") == rows

    # WHEN a version's status changes (a rollback rejects v1)
    sm = aws.client("sagemaker")
    v1 = registry.find(registry.list_versions(sm, GROUP), 1)
    registry.set_status(sm, v1, registry.Approval.REJECTED, reason="rolled back")
    third = exporter.run()
    # THEN only the model versions' day is rewritten, and each version is still there once
    assert third.written[ExportTable.DRIFT_METRICS] == []
    assert len(third.written[ExportTable.MODEL_VERSIONS]) == 1
    statuses = [(r["version"], r["status"]) for r in _query(aws, "model_versions_over_time")]
    assert statuses == [(1, "Rejected"), (1, "Rejected"), (2, "Rejected"), (2, "Rejected")]


def test_objects_and_watermarks_are_where_the_glue_tables_look(
    aws: AwsClients, emulator: str, tmp_path: Path
) -> None:
    # GIVEN an export of a stack with one drift datapoint and no model group yet
    aws.client("s3").create_bucket(Bucket=BUCKET)
    aws.client("cloudwatch").put_metric_data(
        Namespace="Driftline",
        MetricData=[{"MetricName": "DriftScore", "Dimensions": STREAM, "Value": 0.1}],
    )
    report = exporter_for(_settings(emulator), aws, tmp_path).run()
    # THEN the drift metrics are in today's partition object, the watermark names the time
    (day,) = report.written[ExportTable.DRIFT_METRICS]
    s3 = aws.client("s3")
    s3.head_object(Bucket=BUCKET, Key=object_key(ExportTable.DRIFT_METRICS, day))
    mark = json.loads(
        s3.get_object(Bucket=BUCKET, Key=watermark_key(ExportTable.DRIFT_METRICS))["Body"].read()
    )
    assert mark["through"] == report.through and list(mark["digests"]) == [day]
    # AND the tables with nothing to export stay empty (no object), the queries still run
    assert report.written[ExportTable.MODEL_VERSIONS] == []
    assert _query(aws, "model_versions_over_time") == []


def test_cli_export_prints_what_it_wrote(
    aws: AwsClients,
    emulator: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    aws.client("s3").create_bucket(Bucket=BUCKET)
    aws.client("cloudwatch").put_metric_data(
        Namespace="Driftline",
        MetricData=[{"MetricName": "DriftScore", "Dimensions": STREAM, "Value": 0.1}],
    )
    for key, value in {
        "STATE_DIR": str(tmp_path),
        "ENDPOINT_URL": emulator,
        "LAKE_BUCKET": BUCKET,
        "STACK_NAME": STACK,
        "STREAM_NAME": "s-events",
        "MODEL_PACKAGE_GROUP": GROUP,
    }.items():
        monkeypatch.setenv(f"DRIFTLINE_{key}", value)
    assert main(["lake", "export", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rows"]["drift_metrics"] == 1
    assert main(["lake", "export"]) == 0
    assert "drift_metrics: 0 row(s) in 0 day(s) written (nothing new)" in capsys.readouterr().out


@pytest.mark.parametrize("name", HISTORY_QUERIES)
def test_history_queries_render_alike_on_both_engines(name: str) -> None:
    contract = load_contract()
    duck = render(sql_file(name), contract, Engine.DUCKDB)
    assert duck == render(sql_file(name), contract, Engine.ATHENA)
    assert all(f'"{t}"' in duck for t in ExportTable if t.value.split("_")[0] in name)
