"""The Glue table follows the contract: a processor that finds it missing creates it, once.

Real parts: the emulator's Glue and S3, the record processor as ``consumers.app`` builds it, and
awswrangler reading the table back through the catalog (a second reader).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import awswrangler as wr
import pytest

from consumers.app import build_processor
from etl.aws import AwsClients, configure_awswrangler
from etl.contract import load_contract
from etl.lake import GlueCatalog, LakeLayout
from etl.records import RawRecord
from etl.settings import load_settings
from tests.contracts import PARCEL_SCANS, encode, parcel_scans

pytestmark = pytest.mark.functional

CONTRACT = load_contract(PARCEL_SCANS)


@dataclass
class Checkpoints:
    calls: list[str | None] = field(default_factory=list)

    def checkpoint(
        self, sequence_number: str | None = None, sub_sequence_number: Any = None
    ) -> None:
        self.calls.append(sequence_number)


@pytest.fixture
def lake(aws: AwsClients) -> tuple[str, str]:
    configure_awswrangler(aws.endpoint_url)
    aws.client("s3").create_bucket(Bucket="parcel-lake")
    aws.client("glue").create_database(DatabaseInput={"Name": "parceldb"})
    return "parcel-lake", "parceldb"


def test_a_processor_creates_the_missing_table_from_the_contract_and_flushes(
    aws: AwsClients, lake: tuple[str, str]
) -> None:
    bucket, db = lake
    # GIVEN a Glue database without the contract's table, and a processor for the contract
    settings = load_settings(
        {
            "endpoint_url": aws.endpoint_url,
            "lake_bucket": bucket,
            "glue_database": db,
            "contract_path": str(PARCEL_SCANS),
            "flush_max_records": 300,
        },
        env={},
        config_path=None,
    )
    processor = build_processor(settings, CONTRACT, aws)
    processor.initialize("shardId-000000000000", "TRIM_HORIZON")
    rows = parcel_scans(300)
    raws = [RawRecord(encode(r), str(i + 1), r["parcel_id"], None) for i, r in enumerate(rows)]
    cp = Checkpoints()

    # WHEN 300 records arrive (one flush)
    processor.process(raws, cp)

    # THEN the flush was checkpointed instead of crashing on the missing table
    assert cp.calls == ["300"]
    # AND the table exists with the contract's columns, and reads back through the catalog
    table = aws.client("glue").get_table(DatabaseName=db, Name="parcel_scans")["Table"]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    assert columns == list(CONTRACT.glue_columns().items())
    assert table["Parameters"]["driftline_contract_hash"] == CONTRACT.hash
    df = wr.s3.read_parquet_table(database=db, table="parcel_scans", boto3_session=aws.session)
    assert sorted(df["scan_id"]) == sorted(r["scan_id"] for r in rows)


def test_shards_racing_to_create_the_table_make_exactly_one(
    aws: AwsClients, lake: tuple[str, str]
) -> None:
    bucket, db = lake
    # GIVEN eight catalogs (as eight shards' processors) and no table
    layout = LakeLayout(bucket, CONTRACT.name)
    catalogs = [
        GlueCatalog(CONTRACT, layout, db, aws.session, endpoint_url=aws.endpoint_url)
        for _ in range(8)
    ]
    created: list[bool] = []
    start = threading.Barrier(len(catalogs))

    def race(c: GlueCatalog) -> None:
        start.wait()
        created.append(c.create_table_if_missing())

    # WHEN all try to create it at once
    threads = [threading.Thread(target=race, args=(c,)) for c in catalogs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # THEN one created it, the seven others found it made, and every one can add partitions
    assert sorted(created) == [False] * 7 + [True]
    for i, c in enumerate(catalogs):
        c.add_partitions([("2026-03-01", f"{i:02d}")])
    parts = aws.client("glue").get_partitions(DatabaseName=db, TableName="parcel_scans")
    assert len(parts["Partitions"]) == 8


def test_ensure_table_updates_a_table_of_an_older_contract(
    aws: AwsClients, lake: tuple[str, str]
) -> None:
    bucket, db = lake
    layout = LakeLayout(bucket, CONTRACT.name)
    # GIVEN the table of a contract that had no 'hops' yet
    older = load_contract(PARCEL_SCANS)
    older = type(older)(
        name=older.name,
        version=older.version,
        partition_key=older.partition_key,
        fields=tuple(f for f in older.fields if f.name != "hops"),
        task=older.task,
    )
    GlueCatalog(older, layout, db, aws.session, endpoint_url=aws.endpoint_url).ensure_table()
    # WHEN `local up` / `deploy` ensure the current contract's table
    GlueCatalog(CONTRACT, layout, db, aws.session, endpoint_url=aws.endpoint_url).ensure_table()
    # THEN the table has the new column and the new contract's hash
    table = aws.client("glue").get_table(DatabaseName=db, Name="parcel_scans")["Table"]
    assert "hops" in [c["Name"] for c in table["StorageDescriptor"]["Columns"]]
    assert table["Parameters"]["driftline_contract_hash"] == CONTRACT.hash


def test_the_stack_command_makes_a_late_contracts_labels_table_next_to_its_records(
    aws: AwsClients,
) -> None:
    from infra.lake_table import ensure_lake_table
    from tests.contracts import CARD_LATE_LABELS

    # GIVEN a stack's outputs (bucket, Glue database)
    glue = aws.client("glue")
    glue.create_database(DatabaseInput={"Name": "db"})
    outputs = {"LakeBucket": "lake", "GlueDatabase": "db"}
    settings = load_settings({}, env={}, config_path=None)
    # WHEN `local up` / `deploy` make the lake table of a late-label contract and of an inline one
    assert ensure_lake_table(aws, outputs, load_contract(CARD_LATE_LABELS), settings) == (
        "db.card_late_labels"
    )
    ensure_lake_table(aws, outputs, load_contract(), settings)
    # THEN the late one's labels table is there too, with its columns and location; the inline
    # one has none
    names = sorted(t["Name"] for t in glue.get_tables(DatabaseName="db")["TableList"])
    assert names == ["card_late_labels", "card_late_labels_labels", "card_transactions"]
    table = glue.get_table(DatabaseName="db", Name="card_late_labels_labels")["Table"]
    sd = table["StorageDescriptor"]
    assert [c["Name"] for c in sd["Columns"]][:3] == ["transaction_id", "is_fraud", "labelled_at"]
    assert sd["Location"] == "s3://lake/lake/card_late_labels_labels/"
