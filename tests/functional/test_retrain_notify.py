"""SNS notification of champion vs challenger, received by a subscribed SQS queue."""

from __future__ import annotations

import json

import pytest

from etl.aws import AwsClients
from retrain.notify import publish

pytestmark = pytest.mark.functional


def test_the_outcome_reaches_a_subscribed_queue(aws: AwsClients) -> None:
    # GIVEN a topic with an SQS subscriber
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic = sns.create_topic(Name="driftline-retrain")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    outcome = {
        "status": "promoted",
        "model_version": 2,
        "metric": "roc_auc",
        "metrics_champion": {"roc_auc": 0.612},
        "metrics_challenger": {"roc_auc": 0.914},
    }
    # WHEN published
    message_id = publish(sns, topic, outcome)
    # THEN the envelope carries the subject, the metrics document and the attributes
    got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    envelope = json.loads(got[0]["Body"])
    assert envelope["MessageId"] == message_id
    assert envelope["Subject"] == "driftline: model v2 promoted (roc_auc 0.612 -> 0.914)"
    assert json.loads(envelope["Message"]) == outcome
    assert envelope["MessageAttributes"]["status"] == {"Type": "String", "Value": "promoted"}
