"""The Redshift Data API layer, checked for shape with botocore's Stubber (no network)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from etl.contract import Contract, load_contract
from etl.exceptions import WarehouseError
from etl.warehouse.ledger import LedgerEntry
from etl.warehouse.redshift import (
    MERGE_INDEX,
    Polling,
    RedshiftDataWarehouse,
    RedshiftTarget,
    batch_id,
    copy_manifest,
    load_statements,
)
from etl.warehouse.source import FlushManifest, LakeObjectRef

TARGET = RedshiftTarget(
    workgroup="driftline-wg",
    database="dev",
    secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:rs-AbCdEf",
    iam_role="arn:aws:iam::123456789012:role/driftline-copy",
    schema="driftline",
)
CALL = {"WorkgroupName": "driftline-wg", "Database": "dev", "SecretArn": TARGET.secret_arn}
_LAKE_NAMES = (
    "transaction_id card_id event_time amount merchant_category hour distance_from_home_km"
    " device country is_fraud shard_id sequence_number approximate_arrival_time ingest_time"
)
LAKE_COLS = ", ".join(f'"{n}"' for n in _LAKE_NAMES.split())


def manifest(key: str, etag: str, objects: list[tuple[str, int, int]]) -> FlushManifest:
    return FlushManifest(
        key=key,
        etag=etag,
        table="card_transactions",
        shard_id="shardId-000000000000",
        first_sequence="1",
        last_sequence="9",
        state="committed",
        objects=tuple(
            LakeObjectRef(k, rows, "2026-01-05", "09", size) for k, rows, size in objects
        ),
        rows=sum(r for _, r, _ in objects),
    )


BATCH = [
    manifest("manifests/card_transactions/s0/1-9.json", "e1", [("lake/a.parquet", 5, 1200)]),
    manifest(
        "manifests/card_transactions/s1/1-4.json",
        "e2",
        [("lake/b.parquet", 3, 900), ("lake/c.parquet", 1, 700)],
    ),
]


@pytest.fixture
def contract() -> Contract:
    return load_contract()


@pytest.fixture
def clients() -> Iterator[tuple[Any, Stubber, Any, Stubber]]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    rs = session.client("redshift-data")
    s3 = session.client("s3")
    with Stubber(rs) as rs_stub, Stubber(s3) as s3_stub:
        yield rs, rs_stub, s3, s3_stub
        rs_stub.assert_no_pending_responses()
        s3_stub.assert_no_pending_responses()


def test_load_statements_have_the_documented_shape(contract: Contract) -> None:
    # GIVEN two ledger entries, one with a quote in its key
    entries = [LedgerEntry("m/a.json", "e1", 5), LedgerEntry("m/o'brien.json", "e2", 4)]

    # WHEN the batch's statements are generated
    sqls = load_statements(contract, "driftline", "s3://lake/cm.json", TARGET.iam_role, entries)

    # THEN they are exactly these, in this order
    names = LAKE_COLS.split(", ")
    assert sqls == [
        'LOCK "driftline"."card_transactions"',
        'CREATE TEMP TABLE "staging_card_transactions" ("transaction_id" VARCHAR(1024),'
        ' "card_id" VARCHAR(1024), "event_time" TIMESTAMPTZ, "amount" DOUBLE PRECISION,'
        ' "merchant_category" VARCHAR(1024), "hour" BIGINT,'
        ' "distance_from_home_km" DOUBLE PRECISION, "device" VARCHAR(1024),'
        ' "country" VARCHAR(1024), "is_fraud" BOOLEAN, "shard_id" VARCHAR(64),'
        ' "sequence_number" VARCHAR(128), "approximate_arrival_time" TIMESTAMPTZ,'
        ' "ingest_time" TIMESTAMPTZ) DISTKEY ("sequence_number")',
        """COPY "staging_card_transactions" FROM 's3://lake/cm.json'"""
        " IAM_ROLE 'arn:aws:iam::123456789012:role/driftline-copy' FORMAT AS PARQUET MANIFEST",
        'CREATE TEMP TABLE "staging_card_transactions_dedup" DISTKEY ("sequence_number") AS'
        f" SELECT {LAKE_COLS} FROM (SELECT {LAKE_COLS}, ROW_NUMBER() OVER (PARTITION BY"
        ' "shard_id", "sequence_number", "approximate_arrival_time"'
        ' ORDER BY "ingest_time" DESC) AS rn'
        ' FROM "staging_card_transactions") WHERE rn = 1',
        'MERGE INTO "driftline"."card_transactions" USING "staging_card_transactions_dedup" AS s'
        ' ON "driftline"."card_transactions"."shard_id" = s."shard_id"'
        ' AND "driftline"."card_transactions"."sequence_number" = s."sequence_number"'
        ' AND ("driftline"."card_transactions"."approximate_arrival_time"'
        ' = s."approximate_arrival_time"'
        ' OR ("driftline"."card_transactions"."approximate_arrival_time" IS NULL'
        ' AND s."approximate_arrival_time" IS NULL))'
        ' WHEN MATCHED THEN UPDATE SET "shard_id" = s."shard_id"'
        f' WHEN NOT MATCHED THEN INSERT ({LAKE_COLS}, "loaded_at")'
        f" VALUES ({', '.join('s.' + n for n in names)}, GETDATE())",
        """DELETE FROM "driftline"."load_ledger" WHERE manifest_key IN ('m/a.json',"""
        """ 'm/o''brien.json')""",
        'INSERT INTO "driftline"."load_ledger" (manifest_key, etag, rows, loaded_at) VALUES'
        " ('m/a.json', 'e1', 5, GETDATE()), ('m/o''brien.json', 'e2', 4, GETDATE())",
        'DROP TABLE "staging_card_transactions_dedup"',
        'DROP TABLE "staging_card_transactions"',
    ]
    assert sqls[MERGE_INDEX].startswith("MERGE INTO")


def test_default_iam_role_is_the_namespace_default(contract: Contract) -> None:
    sqls = load_statements(contract, "driftline", "s3://lake/cm.json", "default", [])
    assert sqls[2].endswith("'s3://lake/cm.json' IAM_ROLE default FORMAT AS PARQUET MANIFEST")


def test_copy_manifest_lists_every_object_with_its_length() -> None:
    assert copy_manifest("lake", BATCH) == {
        "entries": [
            {
                "url": "s3://lake/lake/a.parquet",
                "mandatory": True,
                "meta": {"content_length": 1200},
            },
            {"url": "s3://lake/lake/b.parquet", "mandatory": True, "meta": {"content_length": 900}},
            {"url": "s3://lake/lake/c.parquet", "mandatory": True, "meta": {"content_length": 700}},
        ]
    }


def test_copy_manifest_takes_missing_sizes_from_a_lookup_or_refuses() -> None:
    unsized = [manifest("m/x.json", "e", [("lake/x.parquet", 1, 0)])]
    assert copy_manifest("lake", unsized, {"lake/x.parquet": 77})["entries"][0]["meta"] == {
        "content_length": 77
    }
    with pytest.raises(WarehouseError, match=r"'lake/x.parquet' without its size"):
        copy_manifest("lake", unsized)


def test_unsized_objects_are_sized_by_head_object(
    contract: Contract, clients: tuple[Any, Stubber, Any, Stubber]
) -> None:
    # GIVEN a flush manifest (as the lake writer may write it) without object sizes
    rs, _, s3, s3_stub = clients
    wh = RedshiftDataWarehouse(rs, s3, contract, TARGET, bucket="lake")
    unsized = [manifest("m/x.json", "e", [("lake/x.parquet", 1, 0), ("lake/y.parquet", 1, 5)])]
    s3_stub.add_response(
        "head_object", {"ContentLength": 4321}, {"Bucket": "lake", "Key": "lake/x.parquet"}
    )
    # WHEN sizes are looked up  THEN only the unsized object costs a HeadObject
    assert wh.object_sizes(unsized) == {"lake/x.parquet": 4321}


def test_load_is_one_batch_statement_polled_with_backoff(
    contract: Contract, clients: tuple[Any, Stubber, Any, Stubber]
) -> None:
    # GIVEN a warehouse on stubbed clients and a batch of two manifests
    rs, rs_stub, s3, s3_stub = clients
    sleeps: list[float] = []
    wh = RedshiftDataWarehouse(
        rs, s3, contract, TARGET, bucket="lake", polling=Polling(sleep=sleeps.append)
    )
    key = f"warehouse/copy-manifests/card_transactions/{batch_id(BATCH)}.json"
    s3_stub.add_response(
        "put_object",
        {},
        {
            "Bucket": "lake",
            "Key": key,
            "Body": json.dumps(copy_manifest("lake", BATCH), sort_keys=True).encode(),
            "ContentType": "application/json",
        },
    )
    sqls = load_statements(
        contract,
        "driftline",
        f"s3://lake/{key}",
        TARGET.iam_role,
        [LedgerEntry.of(m) for m in BATCH],
    )
    rs_stub.add_response(
        "batch_execute_statement",
        {"Id": "b-1", "Database": "dev", "WorkgroupName": "driftline-wg"},
        {"Sqls": sqls, "ClientToken": batch_id(BATCH), **CALL},
    )
    for status in ("SUBMITTED", "STARTED", "STARTED"):
        rs_stub.add_response("describe_statement", {"Id": "b-1", "Status": status}, {"Id": "b-1"})
    subs = [{"Id": f"b-1:{i}", "Status": "FINISHED", "ResultRows": 0} for i in range(len(sqls))]
    subs[MERGE_INDEX]["ResultRows"] = 9
    rs_stub.add_response(
        "describe_statement",
        {"Id": "b-1", "Status": "FINISHED", "SubStatements": subs},
        {"Id": "b-1"},
    )

    # WHEN the batch is loaded
    inserted = wh.load(BATCH)

    # THEN the MERGE's row count comes back, after polls that backed off 0.25 → 0.5 → 1.0 s
    assert inserted == 9
    assert sleeps == [0.25, 0.5, 1.0]


def test_a_failed_statement_surfaces_its_error(
    contract: Contract, clients: tuple[Any, Stubber, Any, Stubber]
) -> None:
    # GIVEN a batch whose COPY fails on Redshift
    rs, rs_stub, s3, s3_stub = clients
    wh = RedshiftDataWarehouse(
        rs, s3, contract, TARGET, bucket="lake", polling=Polling(sleep=lambda _: None)
    )
    s3_stub.add_response(
        "put_object",
        {},
        {"Bucket": "lake", "Key": ANY, "Body": ANY, "ContentType": "application/json"},
    )
    rs_stub.add_response(
        "batch_execute_statement", {"Id": "b-2"}, {"Sqls": ANY, "ClientToken": ANY, **CALL}
    )
    rs_stub.add_response(
        "describe_statement",
        {
            "Id": "b-2",
            "Status": "FAILED",
            "Error": "ERROR: Spectrum Scan Error: column count mismatch",
            "SubStatements": [
                {"Id": "b-2:1", "Status": "FINISHED"},
                {"Id": "b-2:2", "Status": "FINISHED"},
                {
                    "Id": "b-2:3",
                    "Status": "FAILED",
                    "QueryString": "COPY staging_card_transactions",
                },
            ],
        },
        {"Id": "b-2"},
    )

    # WHEN it is loaded  THEN a WarehouseError carries Redshift's error and the failing statement
    with pytest.raises(
        WarehouseError,
        match=r"b-2 FAILED: ERROR: Spectrum Scan Error: column count mismatch"
        r" \(in: COPY staging_card_transactions\)",
    ):
        wh.load(BATCH)


def test_ensure_tables_adds_new_columns_and_ledger_reads_pages(
    contract: Contract, clients: tuple[Any, Stubber, Any, Stubber]
) -> None:
    # GIVEN a table that lacks the contract's 'is_fraud' column
    rs, rs_stub, s3, _ = clients
    wh = RedshiftDataWarehouse(
        rs, s3, contract, TARGET, bucket="lake", polling=Polling(sleep=lambda _: None)
    )
    rs_stub.add_response("batch_execute_statement", {"Id": "s-1"}, {"Sqls": ANY, **CALL})
    rs_stub.add_response("describe_statement", {"Id": "s-1", "Status": "FINISHED"}, {"Id": "s-1"})
    rs_stub.add_response("execute_statement", {"Id": "q-1"}, {"Sql": ANY, **CALL})
    rs_stub.add_response(
        "describe_statement",
        {"Id": "q-1", "Status": "FINISHED", "HasResultSet": True},
        {"Id": "q-1"},
    )
    have = [
        ("transaction_id", "character varying"),
        ("card_id", "character varying"),
        ("event_time", "timestamp with time zone"),
        ("amount", "double precision"),
        ("merchant_category", "character varying"),
        ("hour", "bigint"),
        ("distance_from_home_km", "double precision"),
        ("device", "character varying"),
        ("country", "character varying"),
        ("shard_id", "character varying"),
        ("sequence_number", "character varying"),
        ("approximate_arrival_time", "timestamp with time zone"),
        ("ingest_time", "timestamp with time zone"),
        ("loaded_at", "timestamp with time zone"),
    ]
    rs_stub.add_response(
        "get_statement_result",
        {
            "Records": [[{"stringValue": n}, {"stringValue": t}] for n, t in have],
            "ColumnMetadata": [{"name": "column_name"}, {"name": "data_type"}],
        },
        {"Id": "q-1"},
    )
    # ... and was created keyed on (shard_id, sequence_number) only
    rs_stub.add_response("execute_statement", {"Id": "k-1"}, {"Sql": ANY, **CALL})
    rs_stub.add_response(
        "describe_statement",
        {"Id": "k-1", "Status": "FINISHED", "HasResultSet": True},
        {"Id": "k-1"},
    )
    rs_stub.add_response(
        "get_statement_result",
        {
            "Records": [[{"stringValue": "card_transactions_pkey"}]],
            "ColumnMetadata": [{"name": "constraint_name"}],
        },
        {"Id": "k-1"},
    )
    expected = [
        'ALTER TABLE "driftline"."card_transactions" ADD COLUMN "is_fraud" BOOLEAN',
        'ALTER TABLE "driftline"."card_transactions" DROP CONSTRAINT "card_transactions_pkey"',
        'ALTER TABLE "driftline"."card_transactions" ADD CONSTRAINT'
        ' "card_transactions_identity" UNIQUE'
        ' ("shard_id", "sequence_number", "approximate_arrival_time")',
    ]
    for i, sql in enumerate(expected):
        rs_stub.add_response("execute_statement", {"Id": f"a-{i}"}, {"Sql": sql, **CALL})
        rs_stub.add_response(
            "describe_statement", {"Id": f"a-{i}", "Status": "FINISHED"}, {"Id": f"a-{i}"}
        )
    # the ledger comes back in two pages
    rs_stub.add_response(
        "execute_statement",
        {"Id": "l-1"},
        {"Sql": 'SELECT manifest_key, etag FROM "driftline"."load_ledger"', **CALL},
    )
    rs_stub.add_response(
        "describe_statement",
        {"Id": "l-1", "Status": "FINISHED", "HasResultSet": True},
        {"Id": "l-1"},
    )
    rs_stub.add_response(
        "get_statement_result",
        {
            "Records": [[{"stringValue": "m/a.json"}, {"stringValue": "e1"}]],
            "NextToken": "p2",
            "ColumnMetadata": [{"name": "manifest_key"}, {"name": "etag"}],
        },
        {"Id": "l-1"},
    )
    rs_stub.add_response(
        "get_statement_result",
        {"Records": [[{"stringValue": "m/b.json"}, {"stringValue": "e2"}]]},
        {"Id": "l-1", "NextToken": "p2"},
    )

    # WHEN the tables are ensured and the ledger read
    alters = wh.ensure_tables()
    loaded = wh.loaded()

    # THEN the missing column was added, the identity migrated and both ledger pages were read
    assert alters == expected
    assert loaded == {"m/a.json": "e1", "m/b.json": "e2"}
