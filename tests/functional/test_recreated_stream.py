"""A deleted and re-created stream (same name, same shard ids, sequence numbers from 1 again):
its rows neither overwrite nor swallow the old incarnation's, in the lake and in the warehouse.

Real parts: the emulator's Kinesis (whose sequence numbers restart with a new stream), S3 and
Glue; the record processor as ``consumers.app`` builds it (the stream's incarnation read with
DescribeStreamSummary); the embedded PostgreSQL and the loader.
"""

from __future__ import annotations

import io
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from consumers.app import build_processor
from etl.aws import AwsClients, configure_awswrangler
from etl.contract import load_contract
from etl.records import RawRecord
from etl.settings import Settings, load_settings
from etl.synthetic import encode_record, generate_records
from etl.warehouse import LakeSource, Loader
from etl.warehouse.postgres import PostgresWarehouse
from infra.pg import PgProcess

pytestmark = pytest.mark.functional

CONTRACT = load_contract()
STREAM, BUCKET, DATABASE = "recreated", "recreated-lake", "recreated_db"


class _Checkpoints:
    def __init__(self) -> None:
        self.last: str | None = None

    def checkpoint(self, sequence_number: str | None = None, sub: Any = None) -> None:
        self.last = sequence_number


def _produce(aws: AwsClients, seed: int, n: int) -> set[str]:
    rows = generate_records(n, seed=seed)
    aws.client("kinesis").put_records(
        StreamName=STREAM,
        Records=[{"Data": encode_record(r), "PartitionKey": r["card_id"]} for r in rows],
    )
    return {str(r["transaction_id"]) for r in rows}


def _consume(aws: AwsClients, settings: Settings) -> int:
    """Everything in the stream's one shard through a new processor, flushed every 40 records."""
    kinesis = aws.client("kinesis")
    (shard,) = kinesis.list_shards(StreamName=STREAM)["Shards"]
    it = kinesis.get_shard_iterator(
        StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    got = kinesis.get_records(ShardIterator=it, Limit=10_000)["Records"]
    raws = [
        RawRecord(
            r["Data"],
            r["SequenceNumber"],
            r["PartitionKey"],
            int(r["ApproximateArrivalTimestamp"].timestamp() * 1000),
        )
        for r in got
    ]
    processor = build_processor(settings, CONTRACT, aws)
    processor.initialize(shard["ShardId"], "TRIM_HORIZON")
    checkpoints = _Checkpoints()
    processor.process(raws, checkpoints)
    processor.shutdown_requested(checkpoints)
    return len(raws)


def _lake_ids(aws: AwsClients) -> list[str]:
    s3 = aws.client("s3")
    ids: list[str] = []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="lake/")
    for key in (o["Key"] for p in pages for o in p.get("Contents", [])):
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        ids += pq.read_table(io.BytesIO(body)).column(CONTRACT.id_field.name).to_pylist()
    return ids


def _warehouse_ids(pg: PgProcess, schema: str) -> list[str]:
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.Identifier(CONTRACT.id_field.name), sql.Identifier(schema, CONTRACT.name)
    )
    with psycopg.connect(pg.dsn) as conn:
        return [str(r[0]) for r in conn.execute(query).fetchall()]


def test_a_re_created_streams_rows_join_the_old_ones_in_lake_and_warehouse(
    aws: AwsClients, pg_server: PgProcess, pg_schema: str
) -> None:
    configure_awswrangler(aws.endpoint_url)
    aws.client("s3").create_bucket(Bucket=BUCKET)
    aws.client("glue").create_database(DatabaseInput={"Name": DATABASE})
    kinesis = aws.client("kinesis")
    kinesis.create_stream(StreamName=STREAM, ShardCount=1)
    settings = load_settings(
        {
            "endpoint_url": aws.endpoint_url,
            "stream_name": STREAM,
            "lake_bucket": BUCKET,
            "glue_database": DATABASE,
            "flush_max_records": 40,
        },
        env={},
        config_path=None,
    )
    source = LakeSource(aws.client("s3"), BUCKET, CONTRACT.name)
    warehouse = PostgresWarehouse(pg_server.dsn, CONTRACT, schema=pg_schema, source=source)
    loader = Loader(warehouse, source)
    try:
        # GIVEN a stream's 120 records in the lake and the warehouse
        first = _produce(aws, seed=1, n=120)
        assert _consume(aws, settings) == 120
        loader.run_once()
        # WHEN the stream is deleted and created again under its name, and 100 records flow
        kinesis.delete_stream(StreamName=STREAM)
        kinesis.create_stream(StreamName=STREAM, ShardCount=1)
        second = _produce(aws, seed=2, n=100)
        assert _consume(aws, settings) == 100  # sequence numbers 1..100 again
        summary = loader.run_once()
        # THEN the lake holds both incarnations' rows once each: no flush overwrote the old ones,
        # no new record was taken for an old one already written
        lake = _lake_ids(aws)
        assert sorted(lake) == sorted(first | second) and len(lake) == 220
        # AND the warehouse equals the lake: no old row swallowed a new one in the MERGE
        assert summary.inserted == 100
        assert sorted(_warehouse_ids(pg_server, pg_schema)) == sorted(lake)
    finally:
        warehouse.close()
