"""The local alarm evaluator on the emulator: alarm states in moto, CloudWatch-shaped events."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from etl.aws import AwsClients
from infra.alarm_evaluator import AlarmEvaluator, read_history

pytestmark = pytest.mark.functional

STREAM = [{"Name": "Stream", "Value": "tx"}]


def _queue(aws: AwsClients, name: str) -> tuple[str, str]:
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def _rule(aws: AwsClients, name: str, pattern: dict[str, Any], target_arn: str) -> None:
    events = aws.client("events")
    events.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": target_arn}])


def _messages(aws: AwsClients, url: str) -> list[dict[str, Any]]:
    got = aws.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def _put(cw: Any, t: dt.datetime, value: float) -> None:
    cw.put_metric_data(
        Namespace="Driftline",
        MetricData=[
            {"MetricName": "DriftScore", "Dimensions": STREAM, "Value": value, "Timestamp": t}
        ],
    )


def test_breach_two_of_three_goes_to_alarm_and_emits_the_cloudwatch_event(
    aws: AwsClients, tmp_path: Path
) -> None:
    # GIVEN a 2-of-3 drift alarm (period 60 s, threshold 0.2, missing = notBreaching)
    cw = aws.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName="driftline-drift-score",
        AlarmDescription="drift above 0.2",
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
    # AND a rule (ALARM state, alarm-name prefix) → queue, and a catch-all rule → another queue
    alarm_url, alarm_arn = _queue(aws, "retrain")
    all_url, all_arn = _queue(aws, "all-changes")
    _rule(
        aws,
        "to-retrain",
        {
            "source": ["aws.cloudwatch"],
            "detail-type": ["CloudWatch Alarm State Change"],
            "detail": {"state": {"value": ["ALARM"]}, "alarmName": [{"prefix": "driftline-"}]},
        },
        alarm_arn,
    )
    _rule(
        aws,
        "all",
        {"source": ["aws.cloudwatch"], "detail": {"alarmName": [{"prefix": "driftline-"}]}},
        all_arn,
    )
    # AND drift scores breaching in 2 of the last 3 complete periods
    now = dt.datetime.now(dt.UTC).replace(second=5, microsecond=0)
    p0 = now.replace(second=0) - dt.timedelta(minutes=3)
    for i, v in enumerate([0.31, 0.1, 0.25]):
        _put(cw, p0 + dt.timedelta(minutes=i, seconds=20), v)
    evaluator = AlarmEvaluator(cw, aws.client("events"), clock=lambda: now, state_dir=tmp_path)

    # (moto creates alarms in OK where CloudWatch starts at INSUFFICIENT_DATA: read what it says)
    initial = cw.describe_alarms()["MetricAlarms"][0]["StateValue"]

    # WHEN the evaluator runs once
    transitions = evaluator.evaluate_once()

    # THEN the alarm is in ALARM in the emulator, with the reason
    assert [(t.previous_state, t.state) for t in transitions] == [(initial, "ALARM")]
    stored = cw.describe_alarms(AlarmNames=["driftline-drift-score"])["MetricAlarms"][0]
    assert stored["StateValue"] == "ALARM"
    assert stored["StateReason"].startswith(
        "Threshold Crossed: 2 out of the last 3 datapoints [0.25"
    )
    # AND the rule's queue got exactly CloudWatch's event shape
    (event,) = _messages(aws, alarm_url)
    assert event["source"] == "aws.cloudwatch"
    assert event["detail-type"] == "CloudWatch Alarm State Change"
    assert event["resources"] == [stored["AlarmArn"]]
    assert event["region"] == "us-east-1"
    # EventBridge adds "account" too; moto's default SQS-target template drops it (emulator gap)
    assert set(event) == {
        "version",
        "id",
        "detail-type",
        "source",
        "time",
        "region",
        "resources",
        "detail",
    }
    assert event["time"] == now.strftime("%Y-%m-%dT%H:%M:%SZ")
    detail = event["detail"]
    assert detail["alarmName"] == "driftline-drift-score"
    assert detail["state"]["value"] == "ALARM"
    assert detail["state"]["reason"] == stored["StateReason"]
    assert json.loads(detail["state"]["reasonData"])["recentDatapoints"] == [0.31, 0.1, 0.25]
    assert detail["state"]["timestamp"] == now.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    assert detail["previousState"]["value"] == initial
    (metric,) = detail["configuration"]["metrics"]
    assert detail["configuration"]["description"] == "drift above 0.2"
    assert metric["metricStat"] == {
        "metric": {"namespace": "Driftline", "name": "DriftScore", "dimensions": {"Stream": "tx"}},
        "period": 60,
        "stat": "Maximum",
    }
    assert metric["returnData"] is True
    # AND evaluating again without new data changes nothing and emits nothing
    assert evaluator.evaluate_once() == []
    assert _messages(aws, alarm_url) == []

    # WHEN three periods below the threshold follow
    later = now + dt.timedelta(minutes=3)
    for i in range(3):
        _put(cw, now.replace(second=30) + dt.timedelta(minutes=i), 0.05)
    back = evaluator.evaluate_once(later)

    # THEN it returns to OK: no new retrain event, an OK event on the catch-all rule
    assert [(t.previous_state, t.state) for t in back] == [("ALARM", "OK")]
    assert (
        cw.describe_alarms(AlarmNames=["driftline-drift-score"])["MetricAlarms"][0]["StateValue"]
        == "OK"
    )
    assert _messages(aws, alarm_url) == []
    states = [e["detail"]["state"]["value"] for e in _messages(aws, all_url)]
    assert sorted(states) == ["ALARM", "OK"]
    # AND the local history holds both transitions
    assert [(h.previous_state, h.state) for h in read_history(tmp_path)] == [
        (initial, "ALARM"),
        ("ALARM", "OK"),
    ]


def test_unsupported_alarms_are_skipped(aws: AwsClients) -> None:
    cw = aws.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName="band",
        Namespace="Driftline",
        MetricName="DriftScore",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="LessThanLowerOrGreaterThanUpperThreshold",
    )
    assert AlarmEvaluator(cw, aws.client("events")).evaluate_once() == []


def test_evaluator_process_evaluates_until_sigterm(aws: AwsClients, tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from infra.procs import stop_pid

    # GIVEN an alarm that breaches on missing data
    cw = aws.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName="driftline-dead-letters",
        Namespace="Driftline",
        MetricName="DeadLetters",
        Dimensions=STREAM,
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=10.0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="breaching",
    )
    # WHEN the evaluator runs as its own process
    with open(tmp_path / "evaluator.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infra.alarm_evaluator",
                "--endpoint",
                aws.endpoint_url or "",
                "--state-dir",
                str(tmp_path),
                "--interval",
                "0.2",
                "--prefix",
                "driftline-",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not read_history(tmp_path):
                time.sleep(0.1)
        finally:
            stop_pid(proc.pid)
            proc.wait(10)
    # THEN it recorded the transition, set the state, and exited cleanly on SIGTERM
    assert [h.state for h in read_history(tmp_path)] == ["ALARM"]
    assert cw.describe_alarms()["MetricAlarms"][0]["StateValue"] == "ALARM"
    assert proc.returncode == 0
