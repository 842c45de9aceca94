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
from retrain.handler import RetrainOutcome

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
    dispatcher = Dispatcher(_settings(emulator, queue), aws, run=run)
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
