"""Identifiers reach SQL quoted, never pasted: a contract whose names no engine takes bare.

The file rule (etl.identifiers) already refuses such names; this contract is built in code to
bypass it, so the test shows the second line of defence: the real PostgreSQL warehouse (psycopg's
``sql.Identifier``) and DuckDB over the lake (views registered through the API) take any name.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from etl.aws import AwsClients
from etl.contract import Contract, Field, FieldType, Role, Task
from etl.identifiers import quote_double
from etl.query import LakeQuery
from etl.warehouse import LakeSource, Loader
from etl.warehouse.postgres import PostgresWarehouse
from infra.pg import PgProcess
from tests.functional.lakefiles import make_rows, write_flush

pytestmark = pytest.mark.functional

BUCKET = "quoting-lake"
WEIRD = 'we"ird col'

HOSTILE = Contract(
    name="order",
    version=1,
    partition_key="select",
    fields=(
        Field("select", FieldType.STRING, Role.ID),
        Field("from", FieldType.TIMESTAMP, Role.EVENT_TIME),
        Field(WEIRD, FieldType.FLOAT, Role.FEATURE),
        Field("user", FieldType.STRING, Role.FEATURE, allowed=("a", "b")),
        Field("group", FieldType.BOOL, Role.LABEL, required=False, nullable=True),
    ),
    task=Task.BINARY_CLASSIFICATION,
)


@pytest.fixture
def s3(aws: AwsClients) -> Any:
    client = aws.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def test_postgres_loads_and_merges_a_contract_of_reserved_and_quoted_names(
    pg_server: PgProcess, pg_schema: str, s3: Any
) -> None:
    # GIVEN two committed flushes of the hostile contract, one replayed (overlapping range)
    write_flush(s3, BUCKET, HOSTILE, make_rows(HOSTILE, "shardId-000000000000", 1, 40))
    write_flush(s3, BUCKET, HOSTILE, make_rows(HOSTILE, "shardId-000000000000", 31, 20))
    source = LakeSource(s3, BUCKET, HOSTILE.name)
    wh = PostgresWarehouse(pg_server.dsn, HOSTILE, schema=pg_schema, source=source)

    # WHEN the loader creates the table and merges both flushes
    summary = Loader(wh, source, batch_manifests=1).run_once()
    wh.close()

    # THEN every identity is there once, the odd column holds the floats, nothing broke the SQL
    assert summary.manifests == 2
    table = sql.Identifier(pg_schema, "order")
    with psycopg.connect(pg_server.dsn) as conn:
        rows, ids, weird = conn.execute(
            sql.SQL("SELECT count(*), count(DISTINCT {}), count({}) FROM {}").format(
                sql.Identifier("select"), sql.Identifier(WEIRD), table
            )
        ).fetchone()  # type: ignore[misc]
    assert (rows, ids, weird) == (50, 50, 50)


def test_duckdb_registers_and_queries_the_hostile_contracts_views(aws: AwsClients, s3: Any) -> None:
    # GIVEN one flush of the hostile contract in the lake
    write_flush(s3, BUCKET, HOSTILE, make_rows(HOSTILE, "shardId-000000000000", 1, 25))

    # WHEN DuckDB queries its view with quoted names
    lake = LakeQuery(BUCKET, clients=aws, contract=HOSTILE)
    try:
        result = lake.query(
            f"SELECT count(*), count({quote_double(WEIRD)}), count(DISTINCT {quote_double('user')})"
            f" FROM {quote_double('order')}"
        )
        dead = lake.query(f"SELECT count(*) FROM {quote_double('order_dead_letters')}")
    finally:
        lake.close()

    # THEN the rows come back under their own names
    assert result.rows == [(25, 25, 2)]
    assert dead.rows == [(0,)]
