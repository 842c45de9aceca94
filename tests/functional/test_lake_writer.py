"""The lake writer against the emulator: Parquet, Glue, dead letters, read back by others."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import awswrangler as wr
import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from etl.aws import AwsClients, configure_awswrangler
from etl.contract import load_contract
from etl.exceptions import LakeWriteError
from etl.lake import GlueCatalog, LakeLayout, LakeWriter, WriterOptions, stream_tag
from etl.records import RawRecord, RecordDecoder
from etl.synthetic import encode_record, generate_records, make_poison

CONTRACT = load_contract()
BUCKET = "driftline-test-lake"


@pytest.fixture
def lake(aws: AwsClients) -> tuple[LakeWriter, GlueCatalog]:
    configure_awswrangler(aws.endpoint_url)
    aws.client("s3").create_bucket(Bucket=BUCKET)
    aws.client("glue").create_database(DatabaseInput={"Name": "lakedb"})
    layout = LakeLayout(BUCKET, CONTRACT.name)
    catalog = GlueCatalog(CONTRACT, layout, "lakedb", aws.session, endpoint_url=aws.endpoint_url)
    catalog.ensure_table()
    options = WriterOptions(backoff_base_s=0.01)
    return LakeWriter(CONTRACT, layout, aws.client("s3"), catalog=catalog, options=options), catalog


def _decode(n: int, start: int = 1, poison: int = 0):
    recs = generate_records(n, seed=3, events_per_second=0.5)  # spans several hours
    raws = [
        RawRecord(encode_record(r), str(start + i), r["card_id"], 1_767_225_600_000)
        for i, r in enumerate(recs)
    ]
    rng = np.random.default_rng(0)
    for j in range(poison):
        raws[j] = RawRecord(
            make_poison("wrong_type", rng, recs[j]), raws[j].sequence_number, "k", None
        )
    return recs, RecordDecoder(CONTRACT).decode(
        raws, shard_id="shardId-000000000000", ingest_time=datetime.now(UTC)
    )


def test_flush_is_readable_through_glue_and_pyarrow_with_partitions(lake, aws: AwsClients) -> None:
    writer, _ = lake
    # GIVEN 20,000 s of events (several hours) with 3 poison records
    recs, batch = _decode(10_000, poison=3)
    # WHEN one flush is written
    m = writer.write("shardId-000000000000", "1", "10000", batch.table, batch.dead_letters)
    # THEN the manifest is committed and lists one object per event hour
    assert (
        m.state == "committed"
        and m.rows == 9_997
        and len(m.objects) == len({(o.event_date, o.event_hour) for o in m.objects}) > 1
    )
    # AND awswrangler reads the Glue table back with partitions (a second reader, via the catalog)
    df = wr.s3.read_parquet_table(database="lakedb", table=CONTRACT.name, boto3_session=aws.session)
    assert len(df) == 9_997 and df["transaction_id"].is_unique
    assert set(df["transaction_id"]) == {r["transaction_id"] for r in recs[3:]}
    parts = aws.client("glue").get_partitions(DatabaseName="lakedb", TableName=CONTRACT.name)[
        "Partitions"
    ]
    assert sorted(tuple(p["Values"]) for p in parts) == sorted(
        {(o.event_date, o.event_hour) for o in m.objects}
    )
    # AND the manifest records each object's size (the Redshift COPY manifest needs it)
    s3 = aws.client("s3")
    assert [o.bytes for o in m.objects] == [
        s3.head_object(Bucket=BUCKET, Key=o.key)["ContentLength"] for o in m.objects
    ]
    # AND pyarrow (endpoint_override) reads an object with the contract's exact types
    fs = pafs.S3FileSystem(**aws.s3_filesystem_kwargs())
    t = pq.read_table(f"{BUCKET}/{m.objects[0].key}", filesystem=fs)
    assert t.schema.field("event_time").type == CONTRACT.arrow_schema().field("event_time").type
    # AND the dead letters are JSON lines with the raw payload and the reason
    body = (
        aws.client("s3")
        .get_object(Bucket=BUCKET, Key=m.dead_letter_keys[0])["Body"]
        .read()
        .decode()
    )
    lines = [json.loads(x) for x in body.splitlines()]
    assert [(d["reason"], d["sequence_number"]) for d in lines] == [
        ("wrong_type", "1"),
        ("wrong_type", "2"),
        ("wrong_type", "3"),
    ]


def test_a_replayed_flush_rewrites_the_same_objects(lake, aws: AwsClients) -> None:
    writer, _ = lake
    _, batch = _decode(500)
    first = writer.write("shardId-000000000000", "1", "500", batch.table)
    again = writer.write("shardId-000000000000", "1", "500", batch.table)
    assert [o.key for o in first.objects] == [o.key for o in again.objects]
    keys = [
        o["Key"]
        for o in aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="lake/")["Contents"]
    ]
    assert len(keys) == len(first.objects)
    df = wr.s3.read_parquet_table(database="lakedb", table=CONTRACT.name, boto3_session=aws.session)
    assert len(df) == 500


def test_uncheckpointed_lists_only_ranges_past_the_checkpoint(lake) -> None:
    writer, _ = lake
    _, batch = _decode(30)
    for first, last in [(1, 10), (11, 20), (21, 30)]:
        writer.write(
            "shardId-000000000000", str(first), str(last), batch.table.slice(first - 1, 10)
        )
    got = writer.uncheckpointed("shardId-000000000000", "10")
    assert [(m.first_sequence, m.last_sequence) for m in got] == [("11", "20"), ("21", "30")]
    assert len(writer.uncheckpointed("shardId-000000000000", "TRIM_HORIZON")) == 3
    assert writer.uncheckpointed("shardId-000000000001", None) == []


def test_a_re_created_streams_flushes_never_touch_the_old_incarnations(lake, aws) -> None:  # type: ignore[no-untyped-def]
    old, _ = lake
    arn = "arn:aws:kinesis:us-east-1:123456789012:stream/s"
    tags = [stream_tag(arn, datetime(2026, 1, 1, h, tzinfo=UTC)) for h in (1, 2)]
    first, second = (
        LakeWriter(CONTRACT, old.layout, old.s3, options=WriterOptions(stream=t)) for t in tags
    )
    _, batch = _decode(20)
    # GIVEN a flush of the first incarnation and an untagged one (a lake from before the tag)
    a = first.write("shardId-000000000000", "1", "10", batch.table.slice(0, 10))
    old.write("shardId-000000000000", "11", "20", batch.table.slice(10, 10))
    # WHEN the re-created stream (sequence numbers restarted) flushes the very same range
    b = second.write("shardId-000000000000", "1", "10", batch.table.slice(0, 10))
    # THEN its objects and manifest have keys of their own: nothing of the first is overwritten
    assert {o.key for o in a.objects}.isdisjoint(o.key for o in b.objects)
    assert (a.stream, b.stream) == tuple(tags)
    listed = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="manifests/")["Contents"]
    assert len(listed) == 3
    # AND its processors take only its own manifests (and untagged ones) for pending ranges
    mine = second.uncheckpointed("shardId-000000000000", None)
    assert [(m.stream, m.first_sequence) for m in mine] == [(tags[1], "1"), ("", "11")]


def test_s3_errors_are_retried_then_fail_loudly(lake, aws: AwsClients) -> None:
    writer, _ = lake
    _, batch = _decode(10)
    calls = {"n": 0}
    real_put = writer.s3.put_object

    def flaky_put(**kwargs):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "injected"}}, "PutObject")
        return real_put(**kwargs)

    writer.s3 = type(
        "S3",
        (),
        {
            "put_object": staticmethod(flaky_put),
            "get_paginator": writer.s3.get_paginator,
            "get_object": writer.s3.get_object,
        },
    )()
    # WHEN the first two puts fail THEN the flush still completes
    m = writer.write("shardId-000000000000", "1", "10", batch.table)
    assert m.state == "committed" and calls["n"] > 2

    def dead_put(**kwargs):
        raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "PutObject")

    writer.s3 = type("S3", (), {"put_object": staticmethod(dead_put)})()
    writer.options = dataclasses.replace(writer.options, max_attempts=3)
    # WHEN every put fails THEN LakeWriteError says nothing was acknowledged
    with pytest.raises(LakeWriteError, match="after 3 attempts"):
        writer.write("shardId-000000000000", "11", "20", batch.table)
