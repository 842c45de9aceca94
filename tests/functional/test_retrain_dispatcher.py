"""The local dispatcher: the retrain rule's SQS target → the handler, in-process."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from etl.aws import AwsClients
from etl.settings import Settings, load_settings
from infra.dispatcher import Dispatcher, start_dispatcher
from infra.procs import stop_pid
from retrain.events import example_event
from retrain.gate import GateDeps
from retrain.results import RetrainOutcome

pytestmark = pytest.mark.functional
ALARM = "driftline-drift-score"


def _settings(emulator: str, queue: str) -> Settings:
    return load_settings(
        {
            "endpoint_url": emulator,
            "lake_bucket": "lake",
            "retrain_queue_url": queue,
            "drift_alarm_name": ALARM,
        },
        env={},
        config_path=None,
    )


def _outcome(event_id: str) -> RetrainOutcome:
    return RetrainOutcome(
        status="promoted",
        reason="ok",
        run_id="r",
        event_id=event_id,
        metric="roc_auc",
        metrics_champion=None,
        metrics_challenger={"roc_auc": 0.9},
        model_version=1,
        champion_version=None,
        model_data_url="s3://lake/m",
        baseline_uri=None,
        baseline_version="v",
        window_start="",
        window_end="",
        train_rows=1,
        holdout_rows=1,
    )


def test_events_are_dispatched_once_and_malformed_ones_are_kept(
    aws: AwsClients, emulator: str
) -> None:
    # GIVEN the rule's queue holding an ALARM event twice, an OK event and a malformed body
    sqs = aws.client("sqs")
    aws.client("s3").create_bucket(Bucket="lake")
    queue = sqs.create_queue(QueueName="retrain", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    bodies = [
        json.dumps(example_event(ALARM, event_id="ev-1")),
        json.dumps(example_event(ALARM, event_id="ev-1")),
        json.dumps(example_event(ALARM, "OK", event_id="ev-2", previous_state="ALARM")),
        '{"detail-type": "CloudWatch Alarm State Change", "oops"',
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    runs: list[str] = []

    def run(settings: Any, clients: Any, *, event: Any, now: datetime) -> RetrainOutcome:
        runs.append(event.event_id)
        return _outcome(event.event_id)

    # WHEN the dispatcher polls until the queue is empty (idempotency in the emulator's DynamoDB)
    dispatcher = Dispatcher(_settings(emulator, queue), aws, gate=GateDeps(run=run))
    statuses: list[str] = []
    dead: list[str] = []
    for _ in range(10):
        report = dispatcher.poll_once(max_messages=10)
        statuses += [r.status for r in report.results]
        dead += report.dead_lettered
        assert report.failed == []
        if report.received == 0:
            break

    # THEN one run started, the duplicate and the OK transition did not
    assert runs == ["ev-1"]
    assert sorted(statuses) == ["duplicate", "ignored", "ran"]
    # AND the malformed body is kept under the dead-letter prefix with the reason
    assert len(dead) == 1
    key = dead[0].removeprefix("s3://lake/")
    assert key.startswith("dead-letters/retrain-events/event_date=")
    doc = json.loads(aws.client("s3").get_object(Bucket="lake", Key=key)["Body"].read())
    assert doc["body"] == bodies[3]
    assert doc["reason"].startswith("alarm event: not valid JSON")
    # AND every message was deleted
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert (
        attrs["ApproximateNumberOfMessages"],
        attrs["ApproximateNumberOfMessagesNotVisible"],
    ) == ("0", "0")


def test_a_failing_handler_leaves_the_message_on_the_queue(aws: AwsClients, emulator: str) -> None:
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName="retrain", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(example_event(ALARM, event_id="e")))

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("emulator hiccup")

    report = Dispatcher(_settings(emulator, queue), aws, handle=boom).poll_once()
    assert report.received == 1 and report.failed[0].endswith("RuntimeError: emulator hiccup")
    again = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    assert len(again["Messages"]) == 1


def test_the_dispatcher_process_polls_and_stops_by_pid(
    aws: AwsClients, emulator: str, tmp_path: Path
) -> None:
    # GIVEN the dispatcher started as a process against the emulator's queue
    sqs, s3 = aws.client("sqs"), aws.client("s3")
    s3.create_bucket(Bucket="lake")
    queue = sqs.create_queue(QueueName="retrain")["QueueUrl"]
    pid = start_dispatcher(
        tmp_path,
        env={
            "DRIFTLINE_ENDPOINT_URL": emulator,
            "DRIFTLINE_RETRAIN_QUEUE_URL": queue,
            "DRIFTLINE_LAKE_BUCKET": "lake",
            "DRIFTLINE_STATE_DIR": str(tmp_path / "none"),
        },
    )
    try:
        # WHEN a malformed message arrives
        sqs.send_message(QueueUrl=queue, MessageBody="not an event")
        # THEN it is dead-lettered within seconds and removed from the queue
        deadline = time.monotonic() + 30
        keys: list[str] = []
        while time.monotonic() < deadline and not keys:
            listing = s3.list_objects_v2(Bucket="lake", Prefix="dead-letters/retrain-events/")
            keys = [o["Key"] for o in listing.get("Contents", [])]
            time.sleep(0.2)
        assert len(keys) == 1
    finally:
        stop_pid(pid)
    # AND the process is gone
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- security review ---------------------------------------------------------------------------


def _drain(dispatcher: Dispatcher, rounds: int = 10) -> list[Any]:
    reports = []
    for _ in range(rounds):
        report = dispatcher.poll_once(max_messages=10)
        reports.append(report)
        if report.received == 0:
            break
    return reports


def test_deeply_nested_and_over_long_events_are_kept_as_malformed(
    aws: AwsClients, emulator: str
) -> None:
    # GIVEN a deeply nested body and an event whose id is 5,000 characters long
    sqs = aws.client("sqs")
    aws.client("s3").create_bucket(Bucket="lake")
    queue = sqs.create_queue(QueueName="retrain", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    nested = '{"a": ' * 50_000 + "1" + "}" * 50_000
    long_id = json.dumps(example_event(ALARM, event_id="x" * 5000))
    long_name = json.dumps(example_event("driftline-drift-" + "y" * 300, event_id="ok"))
    for body in (nested, long_id, long_name):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    runs: list[str] = []

    def run(settings: Any, clients: Any, *, event: Any, now: datetime) -> RetrainOutcome:
        runs.append(event.event_id)
        return _outcome(event.event_id)

    # WHEN the dispatcher polls
    reports = _drain(Dispatcher(_settings(emulator, queue), aws, gate=GateDeps(run=run)))
    # THEN nothing ran, nothing failed, and all three are kept with a malformed-event reason
    assert runs == [] and [f for r in reports for f in r.failed] == []
    dead = [u for r in reports for u in r.dead_lettered]
    s3 = aws.client("s3")
    reasons = sorted(
        json.loads(s3.get_object(Bucket="lake", Key=u.removeprefix("s3://lake/"))["Body"].read())[
            "reason"
        ]
        for u in dead
    )
    assert reasons == [
        "alarm event: 'id' has 5000 characters; at most 128 expected",
        "alarm event: detail.'alarmName' has 316 characters; at most 255 expected",
        "alarm event: the JSON is nested too deeply",
    ]
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"


def test_a_message_the_handler_keeps_failing_on_moves_to_the_dead_letter_queue(
    aws: AwsClients, emulator: str
) -> None:
    # GIVEN the retrain queue with a redrive policy to its dead-letter queue (as the template has)
    sqs = aws.client("sqs")
    dlq = sqs.create_queue(QueueName="retrain-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
    queue = sqs.create_queue(
        QueueName="retrain", Attributes={"VisibilityTimeout": "0", "RedrivePolicy": redrive}
    )["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(example_event(ALARM, event_id="e")))

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("always")

    # WHEN the handler fails on every delivery
    failures = sum(
        len(r.failed)
        for r in _drain(Dispatcher(_settings(emulator, queue), aws, handle=boom), rounds=6)
    )
    # THEN after three receives the message is in the dead-letter queue, not lost, not looping
    assert failures == 3
    kept = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["id"] for m in kept] == ["e"]


def test_without_a_drift_alarm_name_only_drift_alarms_retrain(
    aws: AwsClients, emulator: str
) -> None:
    # GIVEN settings without drift_alarm_name, and alarms of this stack of every kind
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName="retrain", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    names = ["driftline-dead-letter-rate", "driftline-consumer-lag", "driftline-drift-score"]
    for i, name in enumerate(names):
        sqs.send_message(
            QueueUrl=queue, MessageBody=json.dumps(example_event(name, event_id=f"{i}"))
        )
    settings = _settings(emulator, queue).replace(drift_alarm_name=None)
    runs: list[str] = []

    def run(settings: Any, clients: Any, *, event: Any, now: datetime) -> RetrainOutcome:
        runs.append(event.alarm_name)
        return _outcome(event.event_id)

    # WHEN dispatched
    results = [
        x for r in _drain(Dispatcher(settings, aws, gate=GateDeps(run=run))) for x in r.results
    ]
    # THEN only the drift alarm ran; the others were ignored, naming the drift prefix
    assert runs == ["driftline-drift-score"]
    ignored = sorted(r.reason for r in results if r.status == "ignored")
    assert ignored == [
        "alarm 'driftline-consumer-lag' does not start with this stack's 'driftline-drift-'",
        "alarm 'driftline-dead-letter-rate' does not start with this stack's 'driftline-drift-'",
    ]


@pytest.mark.parametrize(("state_after", "runs_expected"), [("ALARM", 2), ("OK", 1)])
def test_an_alarm_during_the_cool_down_runs_when_it_ends_if_still_in_alarm(
    aws: AwsClients, emulator: str, state_after: str, runs_expected: int
) -> None:
    # GIVEN the drift alarm in CloudWatch, a 3 s cool-down, and a first ALARM that runs
    sqs, cw = aws.client("sqs"), aws.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName=ALARM, MetricName="DriftScore", Namespace="Driftline", Statistic="Maximum",
        Period=60, EvaluationPeriods=1, Threshold=0.2, ComparisonOperator="GreaterThanThreshold",
    )  # fmt: skip
    cw.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="drift")
    queue = sqs.create_queue(QueueName="retrain", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    settings = _settings(emulator, queue).replace(retrain_cooldown_s=3.0)
    runs: list[str] = []

    def run(settings: Any, clients: Any, *, event: Any, now: datetime) -> RetrainOutcome:
        runs.append(event.event_id)
        return _outcome(event.event_id)

    dispatcher = Dispatcher(settings, aws, gate=GateDeps(run=run))
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(example_event(ALARM, event_id="a1")))
    _drain(dispatcher)
    assert runs == ["a1"]
    # WHEN a second ALARM arrives during the cool-down
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(example_event(ALARM, event_id="a2")))
    [report] = _drain(dispatcher, rounds=1)
    # THEN it is deferred (kept on the queue, invisible), not completed and dropped
    assert report.deferred and [r.status for r in report.results] == ["deferred"]
    assert 2.0 < (report.results[0].retry_after_s or 0) <= 3.0
    assert sqs.receive_message(QueueUrl=queue).get("Messages") is None
    cw.set_alarm_state(AlarmName=ALARM, StateValue=state_after, StateReason="later")
    # WHEN the cool-down is over THEN it comes back and runs only if the alarm is still in ALARM
    deadline, statuses = time.monotonic() + 15, []
    while time.monotonic() < deadline and not statuses:
        time.sleep(0.5)
        statuses = [r.status for r in dispatcher.poll_once().results]
    assert statuses == (["ran"] if state_after == "ALARM" else ["ignored"])
    assert len(runs) == runs_expected
    # AND the queue is empty afterwards
    assert sqs.receive_message(QueueUrl=queue).get("Messages") is None
