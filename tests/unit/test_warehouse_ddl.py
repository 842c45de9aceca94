"""Warehouse DDL from the contract, schema evolution, and the ledger's pure decisions."""

from __future__ import annotations

import dataclasses

import pytest

from etl.contract import Contract, Field, FieldType, Role, load_contract
from etl.exceptions import WarehouseError
from etl.warehouse.ddl import (
    Dialect,
    create_ledger_sql,
    create_table_sql,
    identity_match,
    identity_migration_sql,
    plan_evolution,
    stats_sql,
    table_columns,
)
from etl.warehouse.ledger import batches, to_load, to_read
from etl.warehouse.source import FlushManifest, ManifestRef, parse_manifest


@pytest.fixture
def contract() -> Contract:
    return load_contract()


def info_types(contract: Contract, dialect: Dialect) -> dict[str, str]:
    return {c.name: c.info_type for c in table_columns(contract, dialect)}


def test_postgres_table_ddl(contract: Contract) -> None:
    assert create_table_sql(contract, "driftline", Dialect.POSTGRES) == (
        'CREATE TABLE IF NOT EXISTS "driftline"."card_transactions" (\n'
        '    "transaction_id" VARCHAR NOT NULL,\n'
        '    "card_id" VARCHAR,\n'
        '    "event_time" TIMESTAMPTZ NOT NULL,\n'
        '    "amount" DOUBLE PRECISION,\n'
        '    "merchant_category" VARCHAR,\n'
        '    "hour" BIGINT,\n'
        '    "distance_from_home_km" DOUBLE PRECISION,\n'
        '    "device" VARCHAR,\n'
        '    "country" VARCHAR,\n'
        '    "is_fraud" BOOLEAN,\n'
        '    "shard_id" VARCHAR NOT NULL,\n'
        '    "sequence_number" VARCHAR NOT NULL,\n'
        '    "approximate_arrival_time" TIMESTAMPTZ,\n'
        '    "ingest_time" TIMESTAMPTZ,\n'
        '    "loaded_at" TIMESTAMPTZ,\n'
        '    CONSTRAINT "card_transactions_identity" UNIQUE NULLS NOT DISTINCT'
        ' ("shard_id", "sequence_number", "approximate_arrival_time")\n'
        ")"
    )


def test_redshift_table_ddl_sizes_strings_and_chooses_dist_and_sort_keys(
    contract: Contract,
) -> None:
    sql = create_table_sql(contract, "driftline", Dialect.REDSHIFT)
    assert '    "transaction_id" VARCHAR(1024) NOT NULL,\n' in sql
    assert (
        '    "shard_id" VARCHAR(64) NOT NULL,\n    "sequence_number" VARCHAR(128) NOT NULL,\n'
        in sql
    )
    assert sql.endswith(
        '    CONSTRAINT "card_transactions_identity" UNIQUE'
        ' ("shard_id", "sequence_number", "approximate_arrival_time")\n)\n'
        'DISTSTYLE KEY DISTKEY ("sequence_number")\n'
        'COMPOUND SORTKEY ("event_time")'
    )


def test_redshift_sizes_categoricals_from_their_allowed_values(contract: Contract) -> None:
    long_value = "x" * 300
    c = dataclasses.replace(
        contract,
        fields=tuple(
            dataclasses.replace(f, allowed=("web", long_value)) if f.name == "device" else f
            for f in contract.fields
        ),
    )
    assert '    "device" VARCHAR(300),\n' in create_table_sql(c, "s", Dialect.REDSHIFT)


def test_ledger_ddl() -> None:
    assert create_ledger_sql("driftline", Dialect.POSTGRES) == (
        'CREATE TABLE IF NOT EXISTS "driftline"."load_ledger" (\n'
        "    manifest_key VARCHAR NOT NULL PRIMARY KEY,\n"
        "    etag VARCHAR NOT NULL,\n"
        "    rows BIGINT NOT NULL,\n"
        "    loaded_at TIMESTAMPTZ NOT NULL\n"
        ")"
    )


@pytest.mark.parametrize("dialect", list(Dialect))
def test_an_up_to_date_table_needs_no_change(contract: Contract, dialect: Dialect) -> None:
    assert plan_evolution(contract, "s", info_types(contract, dialect), dialect) == []


def test_postgres_text_columns_count_as_varchar(contract: Contract) -> None:
    existing = {
        k: ("text" if v == "character varying" else v)
        for k, v in info_types(contract, Dialect.POSTGRES).items()
    }
    assert plan_evolution(contract, "s", existing, Dialect.POSTGRES) == []


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (Dialect.POSTGRES, ['ALTER TABLE "s"."card_transactions" ADD COLUMN "channel" VARCHAR']),
        (
            Dialect.REDSHIFT,
            ['ALTER TABLE "s"."card_transactions" ADD COLUMN "channel" VARCHAR(1024)'],
        ),
    ],
)
def test_a_new_field_becomes_an_added_column(
    contract: Contract, dialect: Dialect, expected: list[str]
) -> None:
    # GIVEN a table made from the contract, and a contract that gained a nullable string
    existing = info_types(contract, dialect)
    v2 = dataclasses.replace(
        contract,
        fields=(*contract.fields, Field("channel", FieldType.STRING, Role.FEATURE, False, True)),
    )
    # WHEN the evolution is planned  THEN the column is added
    assert plan_evolution(v2, "s", existing, dialect) == expected


def test_a_dropped_field_is_an_error_naming_the_column_and_the_fix(contract: Contract) -> None:
    existing = info_types(contract, Dialect.POSTGRES) | {"legacy_score": "double precision"}
    with pytest.raises(WarehouseError) as err:
        plan_evolution(contract, "s", existing, Dialect.POSTGRES)
    assert str(err.value) == (
        """"s"."card_transactions" has columns ['legacy_score'] that the contract"""
        " 'card_transactions' no longer has; put the fields back in the contract as nullable, or"
        ' drop them from the warehouse (ALTER TABLE "s"."card_transactions" DROP COLUMN'
        ' "legacy_score") if their data may go'
    )


def test_a_retyped_field_is_an_error_naming_the_column(contract: Contract) -> None:
    existing = info_types(contract, Dialect.POSTGRES) | {"hour": "character varying"}
    with pytest.raises(
        WarehouseError,
        match=r"\"s\"\.\"card_transactions\"\.hour is 'character varying'"
        r" in the warehouse but the contract 'card_transactions' makes it 'bigint'",
    ):
        plan_evolution(contract, "s", existing, Dialect.POSTGRES)


def fm(key: str, etag: str, state: str = "committed") -> FlushManifest:
    return FlushManifest(key, etag, "t", "s0", "1", "2", state, (), 2)


def test_to_read_skips_versions_already_in_the_ledger() -> None:
    listed = [ManifestRef("a", "1"), ManifestRef("b", "2"), ManifestRef("c", "3")]
    assert to_read(listed, {"a": "1", "b": "old"}) == [ManifestRef("b", "2"), ManifestRef("c", "3")]


def test_to_load_keeps_committed_new_versions_once() -> None:
    got = to_load([fm("a", "1"), fm("b", "2", "pending"), fm("c", "3"), fm("c", "3")], {"a": "1"})
    assert [m.key for m in got] == ["c"]


def test_batches_cut_in_order() -> None:
    assert list(batches([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    with pytest.raises(ValueError, match="batch size must be > 0"):
        list(batches([1], 0))


def test_parse_manifest_reads_the_lake_writers_format() -> None:
    body = (
        '{"version": 1, "state": "committed", "table": "t", "shard_id": "s0",'
        ' "first_sequence": "1", "last_sequence": "9", "rows": 9, "written_at": "x",'
        ' "dead_letter_keys": [], "objects": [{"key": "lake/t/a.parquet", "rows": 9,'
        ' "event_date": "2026-01-05", "event_hour": "09", "bytes": 1234}]}'
    )
    m = parse_manifest("manifests/t/s0/a.json", '"abc"', body)
    assert (m.etag, m.committed, m.rows, m.objects[0].bytes) == ("abc", True, 9, 1234)


def test_a_malformed_manifest_is_an_error_naming_its_key() -> None:
    with pytest.raises(WarehouseError, match=r"manifest 'm/x.json' is malformed \(KeyError"):
        parse_manifest("m/x.json", "e", '{"state": "committed"}')


@pytest.mark.parametrize("dialect", list(Dialect))
def test_the_row_identity_includes_the_arrival_time(contract: Contract, dialect: Dialect) -> None:
    # GIVEN either warehouse WHEN the MERGE condition and the duplicate count are built
    match = identity_match("t", "s", dialect)
    # THEN a re-created stream's row (same shard and sequence, later arrival) is another row
    assert match == (
        't."shard_id" = s."shard_id" AND t."sequence_number" = s."sequence_number"'
        ' AND (t."approximate_arrival_time" = s."approximate_arrival_time"'
        ' OR (t."approximate_arrival_time" IS NULL AND s."approximate_arrival_time" IS NULL))'
    )
    assert '"approximate_arrival_time"' in stats_sql(contract, "driftline", dialect)


@pytest.mark.parametrize("dialect", list(Dialect))
def test_a_table_keyed_on_shard_and_sequence_only_is_migrated(
    contract: Contract, dialect: Dialect
) -> None:
    # GIVEN a table created with PRIMARY KEY (shard_id, sequence_number) named t_pkey
    # WHEN its migration is planned
    stmts = identity_migration_sql(contract, "driftline", dialect, "card_transactions_pkey")
    # THEN the old key goes and the identity constraint comes
    assert stmts[0] == (
        'ALTER TABLE "driftline"."card_transactions" DROP CONSTRAINT "card_transactions_pkey"'
    )
    assert stmts[1].startswith('ALTER TABLE "driftline"."card_transactions" ADD CONSTRAINT')
    assert '("shard_id", "sequence_number", "approximate_arrival_time")' in stmts[1]
