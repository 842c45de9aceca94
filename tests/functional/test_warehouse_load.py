"""Loading the lake into the embedded PostgreSQL: exactly once through reloads, replays, crashes.

Real parts only: Parquet objects and manifests in the emulator's S3, a real PostgreSQL 18.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from etl.aws import AwsClients
from etl.contract import Contract, Field, FieldType, Role, load_contract
from etl.exceptions import WarehouseError
from etl.query import LakeQuery
from etl.warehouse import LakeSource, Loader, warehouse_stats
from etl.warehouse.postgres import PostgresWarehouse
from infra.pg import PgProcess
from tests.functional.lakefiles import make_rows, write_flush

pytestmark = pytest.mark.functional

BUCKET = "lake-bucket"
SHARD_A = "shardId-000000000000"
SHARD_B = "shardId-000000000001"


class CrashError(RuntimeError):
    pass


@pytest.fixture
def s3(aws: AwsClients) -> Any:
    client = aws.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def contract() -> Contract:
    return load_contract()


def make_loader(
    pg: PgProcess, schema: str, s3: Any, contract: Contract, **kwargs: Any
) -> tuple[Loader, PostgresWarehouse]:
    source = LakeSource(s3, BUCKET, contract.name)
    wh = PostgresWarehouse(pg.dsn, contract, schema=schema, source=source, **kwargs)
    return Loader(wh, source, batch_manifests=2), wh


def counts(pg: PgProcess, schema: str, table: str) -> tuple[int, int, int]:
    """(rows, distinct identities, ledger rows)."""
    with psycopg.connect(pg.dsn) as conn:
        rows, distinct = conn.execute(
            f"SELECT count(*), count(DISTINCT (shard_id, sequence_number)) FROM {schema}.{table}"
        ).fetchone()  # type: ignore[misc]
        (ledger,) = conn.execute(f"SELECT count(*) FROM {schema}.load_ledger").fetchone()  # type: ignore[misc]
    return rows, distinct, ledger


def three_flushes(s3: Any, contract: Contract) -> list[str]:
    return [
        write_flush(s3, BUCKET, contract, make_rows(contract, SHARD_A, 1, 100)),
        write_flush(s3, BUCKET, contract, make_rows(contract, SHARD_A, 101, 50)),
        write_flush(s3, BUCKET, contract, make_rows(contract, SHARD_B, 1, 70)),
    ]


def test_same_objects_loaded_twice_leave_no_duplicates(
    pg_server: PgProcess, pg_schema: str, s3: Any, contract: Contract, aws: AwsClients
) -> None:
    # GIVEN three committed flushes (220 rows over two shards, several hour partitions)
    three_flushes(s3, contract)
    loader, wh = make_loader(pg_server, pg_schema, s3, contract)

    # WHEN the loader runs twice
    first = loader.run_once()
    second = loader.run_once()

    # THEN the first loads everything in two batches, the second finds nothing new
    assert (first.manifests, first.rows, first.inserted, first.batches) == (3, 220, 220, 2)
    assert (second.manifests, second.rows, second.inserted) == (0, 0, 0)
    assert counts(pg_server, pg_schema, contract.name) == (220, 220, 3)
    # AND the values survived the trip (lake row → warehouse row)
    row = wh.query(
        f"SELECT transaction_id, sequence_number, event_time, loaded_at IS NOT NULL"
        f" FROM {pg_schema}.card_transactions"
        f" WHERE shard_id = '{SHARD_B}' AND sequence_number = '3'"
    ).rows
    assert row == [("tx-0001-3", "3", datetime(2026, 1, 5, 9, 33, 3, tzinfo=UTC), True)]
    # AND the demo's figures come from the warehouse itself (lag: loaded now, ingested in 2026-01)
    stats = warehouse_stats(wh, contract, pg_schema)
    assert (stats["warehouse_rows"], stats["warehouse_duplicates"]) == (220, 0)
    assert stats["warehouse_lag_p95_s"] is not None and stats["warehouse_lag_p95_s"] != 0
    # AND a second reader of the lake (DuckDB) counts the same rows and identities
    lake = LakeQuery(BUCKET, clients=aws, contract=contract)
    assert lake.query(
        "SELECT count(*), count(DISTINCT (shard_id, sequence_number)) FROM card_transactions"
    ).rows == [(220, 220)]
    lake.close()
    wh.close()


def test_a_fresh_ledger_reload_still_merges_without_duplicates(
    pg_server: PgProcess, pg_schema: str, s3: Any, contract: Contract
) -> None:
    # GIVEN a loaded lake whose ledger is then lost
    three_flushes(s3, contract)
    loader, wh = make_loader(pg_server, pg_schema, s3, contract)
    loader.run_once()
    with psycopg.connect(pg_server.dsn) as conn:  # query() reads only: the loader's own session
        conn.execute(f"DELETE FROM {pg_schema}.load_ledger")

    # WHEN the loader runs again
    again = loader.run_once()

    # THEN it reloads every manifest but the MERGE inserts nothing
    assert (again.manifests, again.rows, again.inserted) == (3, 220, 0)
    assert counts(pg_server, pg_schema, contract.name) == (220, 220, 3)
    wh.close()


def test_a_replayed_flush_is_reloaded_without_duplicates(
    pg_server: PgProcess, pg_schema: str, s3: Any, contract: Contract
) -> None:
    # GIVEN a loaded lake
    three_flushes(s3, contract)
    loader, wh = make_loader(pg_server, pg_schema, s3, contract)
    loader.run_once()

    # WHEN a restarted consumer replays the second flush (same keys, new ingest time)
    replay = make_rows(contract, SHARD_A, 101, 50, ingest_time=datetime(2026, 1, 5, 13, tzinfo=UTC))
    write_flush(s3, BUCKET, contract, replay)
    again = loader.run_once()

    # THEN only that manifest (new ETag) is loaded, and it adds no row
    assert (again.manifests, again.rows, again.inserted) == (1, 50, 0)
    assert counts(pg_server, pg_schema, contract.name) == (220, 220, 3)
    wh.close()


def test_a_replay_with_other_boundaries_in_one_batch_adds_no_duplicates(
    pg_server: PgProcess, pg_schema: str, s3: Any, contract: Contract
) -> None:
    # GIVEN two flushes of one shard whose sequence ranges overlap (1..100 and 51..120)
    write_flush(s3, BUCKET, contract, make_rows(contract, SHARD_A, 1, 100))
    write_flush(s3, BUCKET, contract, make_rows(contract, SHARD_A, 51, 70))
    loader, wh = make_loader(pg_server, pg_schema, s3, contract)

    # WHEN both land in the same batch
    summary = loader.run_once()

    # THEN each identity is inserted once
    assert (summary.batches, summary.rows, summary.inserted) == (1, 170, 120)
    assert counts(pg_server, pg_schema, contract.name) == (120, 120, 2)
    wh.close()


def test_a_crash_between_copy_and_merge_leaves_nothing_and_the_retry_completes(
    pg_server: PgProcess, pg_schema: str, s3: Any, contract: Contract
) -> None:
    # GIVEN a loader that crashes after the first batch's COPY, before its MERGE
    three_flushes(s3, contract)

    def crash() -> None:
        raise CrashError("killed between COPY and MERGE")

    crashing, wh1 = make_loader(pg_server, pg_schema, s3, contract, after_copy=crash)

    # WHEN it runs
    with pytest.raises(CrashError):
        crashing.run_once()
    wh1.close()

    # THEN neither rows nor ledger entries were committed
    assert counts(pg_server, pg_schema, contract.name) == (0, 0, 0)

    # WHEN a healthy loader retries
    loader, wh2 = make_loader(pg_server, pg_schema, s3, contract)
    retry = loader.run_once()

    # THEN everything is loaded exactly once
    assert (retry.manifests, retry.inserted) == (3, 220)
    assert counts(pg_server, pg_schema, contract.name) == (220, 220, 3)
    wh2.close()


def test_pending_manifests_wait_for_their_commit(
    pg_server: PgProcess, pg_schema: str, s3: Any, contract: Contract
) -> None:
    # GIVEN one committed flush and one still pending (its writer has not finished)
    write_flush(s3, BUCKET, contract, make_rows(contract, SHARD_A, 1, 10))
    rows = make_rows(contract, SHARD_B, 1, 20)
    write_flush(s3, BUCKET, contract, rows, state="pending")
    loader, wh = make_loader(pg_server, pg_schema, s3, contract)

    # WHEN the loader runs, then the writer commits, then the loader runs again
    before = loader.run_once()
    write_flush(s3, BUCKET, contract, rows)
    after = loader.run_once()

    # THEN the pending one is skipped first and loaded after its commit
    assert (before.manifests, before.pending, before.inserted) == (1, 1, 10)
    assert (after.manifests, after.pending, after.inserted) == (1, 0, 20)
    assert counts(pg_server, pg_schema, contract.name) == (30, 30, 2)
    wh.close()


def with_field(contract: Contract, new: Field) -> Contract:
    return dataclasses.replace(
        contract, fields=(*contract.fields, new), version=contract.version + 1
    )


def test_a_new_nullable_contract_field_adds_a_column(
    pg_server: PgProcess, pg_schema: str, s3: Any, contract: Contract
) -> None:
    # GIVEN rows loaded under contract v1
    write_flush(s3, BUCKET, contract, make_rows(contract, SHARD_A, 1, 10))
    loader, wh = make_loader(pg_server, pg_schema, s3, contract)
    loader.run_once()
    wh.close()

    # WHEN contract v2 adds a nullable float, new flushes carry it, and a v2 loader runs
    v2 = with_field(
        contract,
        Field("merchant_risk", FieldType.FLOAT, Role.FEATURE, required=False, nullable=True),
    )
    write_flush(s3, BUCKET, v2, make_rows(v2, SHARD_A, 11, 10))
    loader2, wh2 = make_loader(pg_server, pg_schema, s3, v2)
    summary = loader2.run_once()

    # THEN the column was added, old rows read NULL and new rows carry values
    assert (summary.altered, summary.manifests, summary.inserted) == (1, 1, 10)
    nulls = wh2.query(
        f"SELECT count(*) FILTER (WHERE merchant_risk IS NULL),"
        f" count(*) FILTER (WHERE merchant_risk IS NOT NULL) FROM {pg_schema}.card_transactions"
    ).rows
    assert nulls == [(12, 8)]  # v1's 10 rows, plus 2 of v2's 10 generated as null (every 5th)
    wh2.close()


def test_a_removed_or_retyped_field_fails_naming_the_column(
    pg_server: PgProcess, pg_schema: str, s3: Any, contract: Contract
) -> None:
    # GIVEN a table created from contract v1
    _, wh = make_loader(pg_server, pg_schema, s3, contract)
    wh.ensure_tables()
    wh.close()
    dropped = dataclasses.replace(
        contract, fields=tuple(f for f in contract.fields if f.name != "device")
    )
    retyped = dataclasses.replace(
        contract,
        fields=tuple(
            dataclasses.replace(f, type=FieldType.INT) if f.name == "amount" else f
            for f in contract.fields
        ),
    )

    # WHEN a contract without 'device' / with an int 'amount' is loaded
    # THEN each fails with an error naming the column and the fix
    with pytest.raises(WarehouseError, match=r"columns \['device'\] that the contract"):
        make_loader(pg_server, pg_schema, s3, dropped)[1].ensure_tables()
    with pytest.raises(WarehouseError, match=r'"card_transactions"\.amount is .double precision.'):
        make_loader(pg_server, pg_schema, s3, retyped)[1].ensure_tables()


def test_flushes_of_the_real_lake_writer_load_exactly_once(
    pg_server: PgProcess, pg_schema: str, s3: Any, contract: Contract
) -> None:
    # GIVEN two flushes written by the consumer's own LakeWriter, then one of them replayed
    from etl.lake import LakeLayout, LakeWriter

    writer = LakeWriter(contract, LakeLayout(bucket=BUCKET, table=contract.name), s3)
    writer.write(SHARD_A, "1", "80", make_rows(contract, SHARD_A, 1, 80))
    writer.write(SHARD_B, "1", "40", make_rows(contract, SHARD_B, 1, 40))
    loader, wh = make_loader(pg_server, pg_schema, s3, contract)
    first = loader.run_once()
    writer.write(SHARD_A, "1", "80", make_rows(contract, SHARD_A, 1, 80))

    # WHEN the loader runs again
    second = loader.run_once()

    # THEN the writer's manifests are understood, and the replay adds nothing
    assert (first.manifests, first.inserted) == (2, 120)
    assert (second.manifests, second.inserted) == (1, 0)
    assert counts(pg_server, pg_schema, contract.name) == (120, 120, 2)
    wh.close()
