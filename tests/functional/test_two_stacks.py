"""Two stacks with different contracts and names share one emulator and never touch each other.

Real parts: the emulator, both stacks deployed by the CLI (``driftline deploy --stack NAME
--contract PATH``), records put with plain boto3, the record processor as ``consumers.app`` builds
it, baselines in each lake bucket, the embedded PostgreSQL, and ``driftline destroy`` of one stack.
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import psycopg
import pytest
from psycopg import sql

from consumers.app import build_processor
from etl.aws import AwsClients, configure_awswrangler
from etl.contract import Contract, load_contract
from etl.export import ExportTable
from etl.profile import build_profile, load_current_baseline, save_baseline
from etl.records import RawRecord
from etl.settings import load_settings
from etl.synthetic import encode_record, generate_records
from etl.warehouse import LakeSource, Loader
from etl.warehouse.postgres import PostgresWarehouse
from infra.cli import main
from infra.context import settings_from_outputs
from infra.pg import PgProcess
from tests.contracts import PARCEL_SCANS, encode, parcel_scans

#: The tables `driftline lake export` fills (the template creates them).
EXPORTED = [str(t) for t in ExportTable]

pytestmark = pytest.mark.functional

CARD = load_contract()
PARCEL = load_contract(PARCEL_SCANS)


def _deploy(stack: str, contract_args: list[str]) -> dict[str, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["deploy", "--stack", stack, "--json", *contract_args]) == 0
    outputs: dict[str, str] = json.loads(out.getvalue())["outputs"]
    return outputs


def _consume(aws: AwsClients, outputs: dict[str, str], contract: Contract, path: str | None) -> int:
    """Read every shard of the stack's stream once and run it through a processor; rows flushed."""
    names = settings_from_outputs(outputs)
    settings = load_settings(
        {**names, "endpoint_url": aws.endpoint_url, "contract_path": path, "flush_max_records": 10},
        env={},
        config_path=None,
    )
    kinesis = aws.client("kinesis")
    stream = names["stream_name"]
    flushed = 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        got = kinesis.get_records(ShardIterator=it, Limit=1000)["Records"]
        processor = build_processor(settings, contract, aws)
        processor.initialize(shard["ShardId"], "TRIM_HORIZON")
        raws = [RawRecord(r["Data"], r["SequenceNumber"], r["PartitionKey"], None) for r in got]
        processor.process(raws, _NoCheckpoint())
        processor.shutdown_requested(_NoCheckpoint())
        flushed += len(raws)
    return flushed


class _NoCheckpoint:
    def checkpoint(self, sequence_number: str | None = None, sub: Any = None) -> None:
        return None


def _keys(aws: AwsClients, bucket: str, prefix: str) -> set[str]:
    pages = aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"].split("/")[1] for p in pages for o in p.get("Contents", [])}


def test_two_stacks_with_different_contracts_stay_apart(
    emulator: str,
    aws: AwsClients,
    pg_server: PgProcess,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    monkeypatch.setenv("DRIFTLINE_ENDPOINT_URL", emulator)
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path / "state"))
    configure_awswrangler(emulator)
    # GIVEN stack "cards" with the shipped example and stack "parcels" with a hand-written contract
    cards = _deploy("cards", [])
    parcels = _deploy("parcels", ["--contract", str(PARCEL_SCANS)])
    kinesis = aws.client("kinesis")
    card_rows = generate_records(60, seed=2)
    parcel_rows = parcel_scans(45)
    kinesis.put_records(
        StreamName=cards["StreamName"],
        Records=[{"Data": encode_record(r), "PartitionKey": r["card_id"]} for r in card_rows],
    )
    kinesis.put_records(
        StreamName=parcels["StreamName"],
        Records=[{"Data": encode(r), "PartitionKey": r["parcel_id"]} for r in parcel_rows],
    )

    # WHEN each stack's records are consumed with its own contract
    assert _consume(aws, cards, CARD, None) == 60
    assert _consume(aws, parcels, PARCEL, str(PARCEL_SCANS)) == 45

    # THEN each lake bucket and Glue database holds only its own contract's table
    for outputs, table in ((cards, "card_transactions"), (parcels, "parcel_scans")):
        for prefix in ("lake/", "manifests/"):
            assert _keys(aws, outputs["LakeBucket"], prefix) == {table}
        tables = aws.client("glue").get_tables(DatabaseName=outputs["GlueDatabase"])["TableList"]
        # its contract's lake table, next to its own shared dead-letter and compaction tables
        assert sorted(t["Name"] for t in tables) == sorted(
            [*EXPORTED, "compactions", "dead_letters", table]
        )
    # AND each stack's alarms watch its own stream only
    cw = aws.client("cloudwatch")
    for stack, outputs in (("cards", cards), ("parcels", parcels)):
        alarms = cw.describe_alarms(AlarmNamePrefix=f"{stack}-")["MetricAlarms"]
        streams = {d["Value"] for a in alarms for d in a["Dimensions"] if d["Name"] == "Stream"}
        assert alarms and streams == {outputs["StreamName"]}
    # AND model package groups are the stacks' own
    groups = aws.client("sagemaker").list_model_package_groups()["ModelPackageGroupSummaryList"]
    assert sorted(g["ModelPackageGroupName"] for g in groups) == [
        cards["ModelPackageGroupName"],
        parcels["ModelPackageGroupName"],
    ]

    # WHEN each stack gets a baseline of its lake
    import awswrangler as wr

    s3 = aws.client("s3")
    for outputs, contract in ((cards, CARD), (parcels, PARCEL)):
        df = wr.s3.read_parquet(
            f"s3://{outputs['LakeBucket']}/lake/{contract.name}/",
            dataset=True,
            boto3_session=aws.session,
        )
        profile = build_profile(df, contract, created_at="2026-03-01T00:00:00Z")
        save_baseline(s3, outputs["LakeBucket"], "baselines", profile)
    # THEN each bucket's current baseline is its own contract's, and the other's is not there
    assert load_current_baseline(s3, cards["LakeBucket"], "baselines", "card_transactions")
    assert (
        load_current_baseline(s3, parcels["LakeBucket"], "baselines", "card_transactions") is None
    )
    assert load_current_baseline(s3, parcels["LakeBucket"], "baselines", "parcel_scans")

    # WHEN both lakes are loaded into the warehouse, each stack in its own schema
    for outputs, contract, n in ((cards, CARD, 60), (parcels, PARCEL, 45)):
        schema = f"{pg_schema}_{contract.name[:4]}"
        source = LakeSource(s3, outputs["LakeBucket"], contract.name)
        wh = PostgresWarehouse(pg_server.dsn, contract, schema=schema, source=source)
        Loader(wh, source).run_once()
        wh.close()
        with psycopg.connect(pg_server.dsn) as conn:
            (rows,) = conn.execute(  # type: ignore[misc]
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, contract.name))
            ).fetchone()
        # THEN every record is there exactly once
        assert rows == n

    # WHEN one stack is destroyed
    assert main(["destroy", "--stack", "cards"]) == 0
    # THEN the other is untouched: its stream, table and alarms are all still there
    assert kinesis.list_streams()["StreamNames"] == [parcels["StreamName"]]
    glue = aws.client("glue")
    assert glue.get_table(DatabaseName=parcels["GlueDatabase"], Name="parcel_scans")
    assert cw.describe_alarms(AlarmNamePrefix="parcels-")["MetricAlarms"]
    assert cw.describe_alarms(AlarmNamePrefix="cards-")["MetricAlarms"] == []
    assert main(["destroy", "--stack", "parcels"]) == 0
