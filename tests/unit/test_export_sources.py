"""The exporter's AWS-only source (DescribeAlarmHistory, which moto lacks) against botocore's
Stubber with CloudWatch's documented response shape; a model package's rows."""

from __future__ import annotations

import datetime as dt
import json

import boto3
from botocore.stub import ANY, Stubber

from etl.export import CloudWatchHistory, Transition, version_rows

T = dt.datetime(2026, 1, 5, 9, 3, 5, tzinfo=dt.UTC)


def _item(name: str, old: str, new: str, at: dt.datetime) -> dict[str, object]:
    return {
        "AlarmName": name,
        "AlarmType": "MetricAlarm",
        "Timestamp": at,
        "HistoryItemType": "StateUpdate",
        "HistorySummary": f"Alarm updated from {old} to {new}",
        "HistoryData": json.dumps(
            {
                "version": "1.0",
                "oldState": {"stateValue": old, "stateReason": "before"},
                "newState": {
                    "stateValue": new,
                    "stateReason": "Threshold Crossed: 2 out of the last 3 datapoints",
                },
            }
        ),
    }


def test_cloudwatch_history_reads_every_page_of_the_stacks_state_updates() -> None:
    # GIVEN CloudWatch's history over two pages, with another stack's alarm among them
    cw = boto3.client(
        "cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    start, end = T - dt.timedelta(hours=1), T + dt.timedelta(hours=1)
    expected = {
        "HistoryItemType": "StateUpdate",
        "StartDate": start,
        "EndDate": end,
        "ScanBy": "TimestampAscending",
    }
    with Stubber(cw) as stub:
        stub.add_response(
            "describe_alarm_history",
            {
                "AlarmHistoryItems": [
                    _item("s-drift-score", "OK", "ALARM", T),
                    _item("other-drift-score", "OK", "ALARM", T),
                ],
                "NextToken": "p2",
            },
            expected,
        )
        stub.add_response(
            "describe_alarm_history",
            {
                "AlarmHistoryItems": [
                    _item("s-drift-score", "ALARM", "OK", T + dt.timedelta(minutes=5))
                ]
            },
            {**expected, "NextToken": ANY},
        )
        # WHEN the stack's transitions are read
        got = list(CloudWatchHistory(cw, "s-").transitions(start, end))
        stub.assert_no_pending_responses()
    # THEN both pages' state changes of the stack's alarms come back, with the new state's reason
    reason = "Threshold Crossed: 2 out of the last 3 datapoints"
    assert got == [
        Transition(T, "s-drift-score", "OK", "ALARM", reason),
        Transition(T + dt.timedelta(minutes=5), "s-drift-score", "ALARM", "OK", reason),
    ]


def test_a_model_package_is_one_row_per_metric_or_one_without() -> None:
    desc = {
        "ModelPackageArn": "arn:aws:sagemaker:us-east-1:1:model-package/s-model/2",
        "ModelPackageVersion": 2,
        "ModelApprovalStatus": "Rejected",
        "CreationTime": T,
        "CustomerMetadataProperties": {
            "metric.auc": "0.78",
            "metric.log_loss": "0.5",
            "champion.auc": "0.81",
            "lineage.run_id": "r",
            "decision": "auc below the champion's",
        },
    }
    rows = version_rows(desc, "s-model")
    assert [(r["metric"], r["value"], r["champion_value"]) for r in rows] == [
        ("auc", 0.78, 0.81),
        ("log_loss", 0.5, None),
    ]
    assert {(r["version"], r["status"], r["promoted_at"]) for r in rows} == {(2, "Rejected", None)}
    bare = version_rows({**desc, "CustomerMetadataProperties": {}}, "s-model")
    assert [(r["metric"], r["value"]) for r in bare] == [(None, None)]


def test_a_run_rereads_from_the_watermarks_day_and_an_hour_earlier_across_midnight() -> None:
    from etl.export import _start_of

    now = dt.datetime(2026, 1, 20, 12, 0, tzinfo=dt.UTC)
    # a first run: the last 14 days, from midnight
    assert _start_of({}, now) == dt.datetime(2026, 1, 6, tzinfo=dt.UTC)
    # the watermark's day from midnight
    assert _start_of({"through": "2026-01-20T09:00:00+00:00"}, now) == dt.datetime(
        2026, 1, 20, tzinfo=dt.UTC
    )
    # just after midnight: the previous day again (late datapoints of its last hour)
    assert _start_of({"through": "2026-01-20T00:30:00+00:00"}, now) == dt.datetime(
        2026, 1, 19, tzinfo=dt.UTC
    )
