"""Kinesis' 1 MiB record limit holds locally where AWS enforces it: the emulator and the producer.

Real parts: the emulator (moto behind our WSGI guard, over hypercorn) and boto3 as a user's own
producer would call it.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from etl.aws import AwsClients
from etl.exceptions import ProducerError
from etl.producer import KinesisProducer

pytestmark = pytest.mark.functional

MIB = 1024 * 1024


@pytest.fixture
def stream(aws: AwsClients) -> str:
    kinesis = aws.client("kinesis")
    kinesis.create_stream(StreamName="limits", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="limits")
    return "limits"


def _records(aws: AwsClients, stream: str) -> list[bytes]:
    kinesis = aws.client("kinesis")
    shard = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"][0]
    it = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return [r["Data"] for r in kinesis.get_records(ShardIterator=it, Limit=100)["Records"]]


def test_put_record_over_one_mib_is_refused_like_kinesis_and_nothing_lands(
    aws: AwsClients, stream: str
) -> None:
    kinesis = aws.client("kinesis")
    # GIVEN a record whose data plus partition key is exactly 1 MiB, and one a byte over
    kinesis.put_record(StreamName=stream, Data=b"x" * (MIB - 1), PartitionKey="k")

    # WHEN the oversize one is put with plain boto3
    with pytest.raises(ClientError) as err:
        kinesis.put_record(StreamName=stream, Data=b"y" * MIB, PartitionKey="k")

    # THEN it fails with Kinesis' own error shape and only the first record is on the stream
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert err.value.response["Error"]["Message"] == (
        "1 validation error detected: Value at 'data' failed to satisfy constraint: Member must"
        " have length less than or equal to 1048576"
    )
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert [len(d) for d in _records(aws, stream)] == [MIB - 1]


def test_put_records_entry_over_one_mib_is_refused(aws: AwsClients, stream: str) -> None:
    # WHEN a PutRecords request carries one entry over the limit
    with pytest.raises(ClientError) as err:
        aws.client("kinesis").put_records(
            StreamName=stream,
            Records=[
                {"Data": b"ok", "PartitionKey": "k"},
                {"Data": b"z" * (2 * MIB), "PartitionKey": "k"},
            ],
        )
    # THEN the whole request is refused, naming the entry
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert "'records.2.member.data'" in err.value.response["Error"]["Message"]
    assert _records(aws, stream) == []


def test_the_producer_refuses_an_oversize_record_before_sending_anything(
    aws: AwsClients, stream: str
) -> None:
    producer = KinesisProducer(aws.client("kinesis"), stream)
    # WHEN a batch holds one good record and one of 2 MB
    with pytest.raises(ProducerError) as err:
        producer.put([(b"good", "k"), (b"w" * 2_000_000, "k")])
    # THEN the error names the record, its size and the limit; nothing was put
    assert str(err.value) == (
        "record 1 is 2000001 bytes (data + partition key), over Kinesis' 1048576-byte record"
        " limit; split or shrink it"
    )
    assert _records(aws, stream) == []
