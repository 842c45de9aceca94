"""Warehouse DDL generated from the data contract, for PostgreSQL and Redshift.

The warehouse table holds a lake row (the contract's fields, then ``shard_id``, ``sequence_number``,
``approximate_arrival_time``, ``ingest_time``) plus ``loaded_at``, the time the loader merged it
(lake → warehouse lag is ``loaded_at - ingest_time``). Partition columns stay in the lake's paths.

A row's identity is (``shard_id``, ``sequence_number``, ``approximate_arrival_time``): sequence
numbers are unique within one stream's shard, but a deleted and re-created stream (same name, same
shard ids) starts them again, and its records arrive after the old stream was deleted, so the
arrival time (Kinesis' own, identical on every replay of a record) tells the two incarnations
apart. The loader merges on that identity (:func:`identity_match`); rows of two incarnations
never swallow each other. Tables created before keyed on (shard, sequence) only: their primary key
is replaced by the identity constraint when the loader starts (:func:`identity_migration_sql`).

Only ``shard_id``, ``sequence_number`` and the contract's id and event time are ``NOT NULL``:
every other column is nullable in the warehouse so that adding a field to the contract is always
an ``ALTER TABLE ... ADD COLUMN`` (rows loaded before it read ``NULL``).

Redshift physical design (see docs/warehouse.md):

* ``DISTKEY(sequence_number)``: high cardinality, so rows spread evenly over slices, and the
  loader's staging table uses the same key, so the MERGE join on the row identity is
  collocated. ``shard_id`` has only as many values as the stream has shards and would skew.
* ``SORTKEY(<event time>)``: analytics filter on time ranges (days, hours, drift windows); rows
  arrive roughly in event-time order, so the unsorted region stays small.

Every identifier is quoted (:func:`ident`): psycopg's ``sql.Identifier`` for PostgreSQL, the same
SQL-standard double quotes (``"`` doubled inside) for Redshift; nothing is pasted bare.

>>> from etl.contract import load_contract
>>> print(create_table_sql(load_contract(), "driftline", Dialect.POSTGRES).splitlines()[0])
CREATE TABLE IF NOT EXISTS "driftline"."card_transactions" (
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from etl.contract import (
    ARRIVAL_TIME,
    INGEST_TIME,
    SEQUENCE_NUMBER,
    SHARD_ID,
    WAREHOUSE_LOADED_AT,
    Contract,
    FieldType,
)
from etl.exceptions import WarehouseError
from etl.identifiers import quote_double

LOADED_AT = WAREHOUSE_LOADED_AT
LEDGER_TABLE = "load_ledger"
#: A warehouse row's identity (see the module docstring).
IDENTITY = (SHARD_ID, SEQUENCE_NUMBER, ARRIVAL_TIME)

#: Redshift VARCHAR lengths are bytes. Contract strings have no declared length.
REDSHIFT_STRING_BYTES = 1024
REDSHIFT_ALLOWED_STRING_BYTES = 256


class Dialect(StrEnum):
    POSTGRES = "postgres"
    REDSHIFT = "redshift"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    #: The type as written in DDL.
    sql_type: str
    #: The type as ``information_schema.columns.data_type`` reports it.
    info_type: str
    not_null: bool = False

    def ddl(self, dialect: Dialect) -> str:
        return f"{ident(self.name, dialect)} {self.sql_type}{' NOT NULL' if self.not_null else ''}"


def ident(name: str, dialect: Dialect) -> str:
    """``name`` as a quoted SQL identifier of ``dialect``."""
    if dialect is Dialect.POSTGRES:
        from psycopg import sql

        return sql.Identifier(name).as_string(None)
    return quote_double(name)


def idents(names: list[str], dialect: Dialect, prefix: str = "") -> str:
    """A comma-separated list of quoted identifiers, each optionally qualified (``s.``)."""
    return ", ".join(f"{prefix}{ident(n, dialect)}" for n in names)


_INFO_TYPES: dict[FieldType, str] = {
    FieldType.STRING: "character varying",
    FieldType.INT: "bigint",
    FieldType.FLOAT: "double precision",
    FieldType.BOOL: "boolean",
    FieldType.TIMESTAMP: "timestamp with time zone",
}

_SQL_TYPES: dict[FieldType, str] = {
    FieldType.STRING: "VARCHAR",
    FieldType.INT: "BIGINT",
    FieldType.FLOAT: "DOUBLE PRECISION",
    FieldType.BOOL: "BOOLEAN",
    FieldType.TIMESTAMP: "TIMESTAMPTZ",
}


def _string(dialect: Dialect, size: int) -> str:
    # PostgreSQL: VARCHAR without a length is TEXT by another name, and reports the same info type.
    return "VARCHAR" if dialect is Dialect.POSTGRES else f"VARCHAR({size})"


def lake_columns(contract: Contract, dialect: Dialect) -> list[Column]:
    """Columns of a lake row, in the lake's (and the Parquet objects') order."""
    cols: list[Column] = []
    strict = {contract.id_field.name, contract.event_time_field.name}
    for f in contract.fields:
        if f.type is FieldType.STRING:
            size = REDSHIFT_ALLOWED_STRING_BYTES if f.allowed else REDSHIFT_STRING_BYTES
            if f.allowed:
                size = max(size, *(len(a.encode()) for a in f.allowed))
            sql_type = _string(dialect, size)
        else:
            sql_type = _SQL_TYPES[f.type]
        cols.append(Column(f.name, sql_type, _INFO_TYPES[f.type], not_null=f.name in strict))
    cols += [
        Column(SHARD_ID, _string(dialect, 64), "character varying", not_null=True),
        Column(SEQUENCE_NUMBER, _string(dialect, 128), "character varying", not_null=True),
        Column(ARRIVAL_TIME, "TIMESTAMPTZ", "timestamp with time zone"),
        Column(INGEST_TIME, "TIMESTAMPTZ", "timestamp with time zone"),
    ]
    return cols


def table_columns(contract: Contract, dialect: Dialect) -> list[Column]:
    """Columns of the warehouse table: the lake row, then ``loaded_at``."""
    return [
        *lake_columns(contract, dialect),
        Column(LOADED_AT, "TIMESTAMPTZ", "timestamp with time zone"),
    ]


def qualified(schema: str, table: str, dialect: Dialect) -> str:
    return f"{ident(schema, dialect)}.{ident(table, dialect)}"


def create_schema_sql(schema: str, dialect: Dialect) -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {ident(schema, dialect)}"


def identity_constraint(contract: Contract, dialect: Dialect) -> str:
    """The table constraint on the row identity (PostgreSQL enforces it, Redshift informs)."""
    key = idents(list(IDENTITY), dialect)
    name = ident(f"{contract.name}_identity", dialect)
    if dialect is Dialect.POSTGRES:
        return f"CONSTRAINT {name} UNIQUE NULLS NOT DISTINCT ({key})"
    return f"CONSTRAINT {name} UNIQUE ({key})"


def identity_match(target: str, source: str, dialect: Dialect) -> str:
    """The MERGE condition: same identity (a missing arrival time matches a missing one)."""
    shard, seq, arrival = (ident(c, dialect) for c in IDENTITY)
    t, s = f"{target}.", f"{source}."
    return (
        f"{t}{shard} = {s}{shard} AND {t}{seq} = {s}{seq}"
        f" AND ({t}{arrival} = {s}{arrival} OR ({t}{arrival} IS NULL AND {s}{arrival} IS NULL))"
    )


def identity_migration_sql(
    contract: Contract, schema: str, dialect: Dialect, primary_key: str
) -> list[str]:
    """A table created keyed on (shard, sequence) only: drop that primary key
    (``primary_key``, its name), add the identity constraint."""
    target = qualified(schema, contract.name, dialect)
    return [
        f"ALTER TABLE {target} DROP CONSTRAINT {ident(primary_key, dialect)}",
        f"ALTER TABLE {target} ADD {identity_constraint(contract, dialect)}",
    ]


def primary_key_sql(contract: Contract, schema: str) -> str:
    """The name of the table's primary key, if it has one (the identity before incarnations)."""

    def literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    return (
        "SELECT constraint_name FROM information_schema.table_constraints"
        f" WHERE table_schema = {literal(schema)} AND table_name = {literal(contract.name)}"
        " AND constraint_type = 'PRIMARY KEY'"
    )


def create_table_sql(contract: Contract, schema: str, dialect: Dialect) -> str:
    cols = table_columns(contract, dialect)
    body = ",\n".join(f"    {c.ddl(dialect)}" for c in cols)
    target = qualified(schema, contract.name, dialect)
    constraint = identity_constraint(contract, dialect)
    if dialect is Dialect.POSTGRES:
        return f"CREATE TABLE IF NOT EXISTS {target} (\n{body},\n    {constraint}\n)"
    return (
        f"CREATE TABLE IF NOT EXISTS {target} (\n{body},\n"
        f"    {constraint}\n)\n"
        f"DISTSTYLE KEY DISTKEY ({ident(SEQUENCE_NUMBER, dialect)})\n"
        f"COMPOUND SORTKEY ({ident(contract.event_time_field.name, dialect)})"
    )


def create_ledger_sql(schema: str, dialect: Dialect) -> str:
    text = _string(dialect, 1024)
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified(schema, LEDGER_TABLE, dialect)} (\n"
        f"    manifest_key {text} NOT NULL PRIMARY KEY,\n"
        f"    etag {_string(dialect, 128)} NOT NULL,\n"
        f"    rows BIGINT NOT NULL,\n"
        f"    loaded_at TIMESTAMPTZ NOT NULL\n"
        ")"
    )


def _same_type(found: str, wanted: str) -> bool:
    found = found.lower()
    return found == wanted or (wanted == "character varying" and found == "text")


def plan_evolution(
    contract: Contract, schema: str, existing: Mapping[str, str], dialect: Dialect
) -> list[str]:
    """``ALTER TABLE`` statements that bring an existing table up to the contract.

    ``existing`` maps column name → ``information_schema`` data type. A field new to the contract
    becomes an added (nullable) column; a column the contract dropped or retyped is an error that
    names the column and the fix, because silently loading around it would lose data.
    """
    target = qualified(schema, contract.name, dialect)
    wanted = table_columns(contract, dialect)
    wanted_names = {c.name for c in wanted}
    removed = sorted(set(existing) - wanted_names)
    if removed:
        raise WarehouseError(
            f"{target} has columns {removed} that the contract {contract.name!r} no longer has;"
            " put the fields back in the contract as nullable, or drop them from the warehouse"
            f" (ALTER TABLE {target} DROP COLUMN {ident(removed[0], dialect)}) if their data may go"
        )
    statements: list[str] = []
    for col in wanted:
        found = existing.get(col.name)
        if found is None:
            column = f"{ident(col.name, dialect)} {col.sql_type}"
            statements.append(f"ALTER TABLE {target} ADD COLUMN {column}")
        elif not _same_type(found, col.info_type):
            raise WarehouseError(
                f"{target}.{col.name} is {found!r} in the warehouse but the contract"
                f" {contract.name!r} makes it {col.info_type!r}; a field's type cannot change in"
                " place: add a field under a new name, or migrate the column"
                f" (ALTER TABLE {target} ALTER COLUMN {ident(col.name, dialect)} TYPE"
                f" {col.sql_type}) and reload"
            )
    return statements


def stats_sql(contract: Contract, schema: str, dialect: Dialect) -> str:
    """Rows, duplicate identities and lake → warehouse lag (p50/p95 of loaded_at - ingest_time)."""
    target = qualified(schema, contract.name, dialect)
    loaded, ingest = ident(LOADED_AT, dialect), ident(INGEST_TIME, dialect)
    if dialect is Dialect.POSTGRES:
        lag = f"EXTRACT(EPOCH FROM ({loaded} - {ingest}))"
    else:
        lag = f"DATEDIFF(millisecond, {ingest}, {loaded}) / 1000.0"
    shard, seq, arrival = (ident(c, dialect) for c in IDENTITY)
    identity = f"{shard} || '/' || {seq} || '/' || COALESCE(CAST({arrival} AS VARCHAR), '-')"
    return (
        f"SELECT count(*) AS warehouse_rows,"
        f" count(*) - count(DISTINCT {identity})"
        f" AS warehouse_duplicates,"
        f" percentile_cont(0.5) WITHIN GROUP (ORDER BY {lag}) AS warehouse_lag_p50_s,"
        f" percentile_cont(0.95) WITHIN GROUP (ORDER BY {lag}) AS warehouse_lag_p95_s"
        f" FROM {target}"
    )
