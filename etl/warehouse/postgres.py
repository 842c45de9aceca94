"""PostgreSQL warehouse (the embedded local one, or any PostgreSQL >= 15): binary COPY + MERGE.

One batch is one transaction::

    LOCK TABLE target IN SHARE ROW EXCLUSIVE MODE      -- one loader at a time, readers welcome
    CREATE TEMP TABLE staging (lake columns) ON COMMIT DROP
    COPY staging (...) FROM STDIN (FORMAT BINARY)    -- all rows, encoded by etl.warehouse.pgbinary
    MERGE INTO target USING staging (one row per identity if ranges overlap)
        ON (shard_id, sequence_number, approximate_arrival_time)   -- see etl.warehouse.ddl
        WHEN NOT MATCHED THEN INSERT ...
    INSERT INTO load_ledger ... ON CONFLICT (manifest_key) DO UPDATE   -- new ETag on a replay
    COMMIT

A crash anywhere before COMMIT leaves nothing; rows already merged by an earlier load of the same
identity are skipped by the MERGE, so reloading (a replayed flush, a lost ledger row) adds nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import pyarrow as pa

from etl.contract import Contract
from etl.exceptions import WarehouseError
from etl.redact import redact
from etl.warehouse import ddl, pgbinary
from etl.warehouse.base import QueryResult
from etl.warehouse.ddl import Dialect
from etl.warehouse.ledger import LedgerEntry, ranges_overlap
from etl.warehouse.source import FlushManifest, LakeSource

log = logging.getLogger(__name__)

#: Rows encoded per COPY chunk (bounds the encoder's temporary memory).
COPY_CHUNK_ROWS = 65_536


def arrow_rows(table: pa.Table) -> Iterable[tuple[Any, ...]]:
    """Python rows of an Arrow table, column by column (much faster than ``to_pylist``)."""
    return zip(*(col.to_pylist() for col in table.columns), strict=True)


def merge_sql(contract: Contract, schema: str, staging: str, *, dedup: bool = True) -> str:
    """The MERGE of staging into the target; ``dedup`` keeps one staging row per identity."""
    pg = Dialect.POSTGRES
    cols = [c.name for c in ddl.lake_columns(contract, pg)]
    target = ddl.qualified(schema, contract.name, pg)
    staged = ddl.ident(staging, pg)
    identity = ddl.idents(list(ddl.IDENTITY), pg)
    source = f"(SELECT DISTINCT ON ({identity}) * FROM {staged})" if dedup else staged
    return (
        f"MERGE INTO {target} AS t\n"
        f"USING {source} AS s\n"
        f"ON {ddl.identity_match('t', 's', pg)}\n"
        f"WHEN NOT MATCHED THEN INSERT ({ddl.idents([*cols, ddl.LOADED_AT], pg)})\n"
        f"VALUES ({ddl.idents(cols, pg, 's.')}, clock_timestamp())"
    )


class PostgresWarehouse:
    """Loads flush manifests into PostgreSQL; ``source`` reads their objects from the lake.

    ``after_copy`` runs inside the transaction right after the COPY (tests inject a crash there).
    """

    def __init__(
        self,
        dsn: str,
        contract: Contract,
        *,
        schema: str = "driftline",
        source: LakeSource | None = None,
        after_copy: Callable[[], None] | None = None,
    ) -> None:
        self.dsn = dsn
        self.contract = contract
        self.schema = schema
        self.source = source
        self.after_copy = after_copy
        self._conn: psycopg.Connection[Any] | None = None

    # -- connection ------------------------------------------------------------------------
    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self.dsn, connect_timeout=10)
                # Staging is a temp table: give it memory before the session's first one.
                self._conn.execute("SET temp_buffers = '128MB'")
                self._conn.commit()
            except psycopg.OperationalError as exc:
                raise WarehouseError(
                    f"cannot connect to the PostgreSQL warehouse {redact(self.dsn)!r}:"
                    f" {redact(str(exc))}; is it"
                    " running? (`driftline local up` starts the embedded one)"
                ) from None
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def target(self) -> str:
        return ddl.qualified(self.schema, self.contract.name, Dialect.POSTGRES)

    @property
    def ledger_table(self) -> str:
        return ddl.qualified(self.schema, ddl.LEDGER_TABLE, Dialect.POSTGRES)

    # -- schema ----------------------------------------------------------------------------
    def existing_columns(self) -> dict[str, str]:
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = %s",
                (self.schema, self.contract.name),
            )
            return {str(name): str(typ) for name, typ in cur.fetchall()}

    def ensure_tables(self) -> list[str]:
        with self.conn.transaction(), self.conn.cursor() as cur:
            # Serialise concurrent first runs (CREATE ... IF NOT EXISTS races on the catalog).
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.target,))
            cur.execute(ddl.create_schema_sql(self.schema, Dialect.POSTGRES))
            cur.execute(ddl.create_table_sql(self.contract, self.schema, Dialect.POSTGRES))
            cur.execute(ddl.create_ledger_sql(self.schema, Dialect.POSTGRES))
            alters = ddl.plan_evolution(
                self.contract, self.schema, self.existing_columns(), Dialect.POSTGRES
            )
            cur.execute(ddl.primary_key_sql(self.contract, self.schema))
            for (old_key,) in cur.fetchall():
                alters += ddl.identity_migration_sql(
                    self.contract, self.schema, Dialect.POSTGRES, str(old_key)
                )
            for stmt in alters:
                log.info("schema evolution: %s", stmt)
                cur.execute(stmt)
        return alters

    # -- ledger ----------------------------------------------------------------------------
    def loaded(self) -> dict[str, str]:
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT manifest_key, etag FROM {self.ledger_table}")
            rows = cur.fetchall()
        self.conn.commit()
        return {str(k): str(e) for k, e in rows}

    # -- load ------------------------------------------------------------------------------
    def load(self, manifests: Sequence[FlushManifest]) -> int:
        if self.source is None:
            raise WarehouseError(
                "this PostgresWarehouse has no lake source; pass source=LakeSource(...)"
            )
        keys = [o.key for m in manifests for o in m.objects]
        entries = [LedgerEntry.of(m) for m in manifests]
        dedup = ranges_overlap(manifests)
        try:
            return self.load_tables(self.source.read_objects(keys, self.contract), entries, dedup)
        except WarehouseError as exc:
            if dedup or not isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise
            # Two rows of one identity where the manifests said none: load again, de-duplicated.
            log.warning("duplicate identities inside a batch; reloading it de-duplicated")
            return self.load_tables(self.source.read_objects(keys, self.contract), entries, True)

    def load_tables(
        self, tables: Iterable[pa.Table], entries: Sequence[LedgerEntry], dedup: bool = True
    ) -> int:
        """COPY ``tables`` (lake rows) into staging, MERGE, record ``entries``: one transaction.

        ``dedup=False`` skips sorting staging by identity (the batch's ranges are disjoint); a
        duplicate then fails the identity constraint and the whole transaction, never the data.
        """
        staging = f"_staging_{self.contract.name}"
        staged = ddl.ident(staging, Dialect.POSTGRES)
        lake = ddl.lake_columns(self.contract, Dialect.POSTGRES)
        cols = ddl.idents([c.name for c in lake], Dialect.POSTGRES)
        now = datetime.now(UTC)
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute(f"LOCK TABLE {self.target} IN SHARE ROW EXCLUSIVE MODE")
                cur.execute("SET LOCAL work_mem = '128MB'")
                # Probe the target's primary key per staged row: a hash join would scan the whole
                # (ever-growing) target at every batch.
                cur.execute("SET LOCAL enable_hashjoin = off")
                cur.execute("SET LOCAL enable_mergejoin = off")
                cur.execute(
                    f"CREATE TEMP TABLE {staged} ON COMMIT DROP AS"
                    f" SELECT {cols} FROM {self.target} WITH NO DATA"
                )
                with cur.copy(f"COPY {staged} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(pgbinary.HEADER)
                    for table in tables:
                        for start in range(0, table.num_rows, COPY_CHUNK_ROWS):
                            copy.write(pgbinary.encode_rows(table.slice(start, COPY_CHUNK_ROWS)))
                    copy.write(pgbinary.TRAILER)
                if self.after_copy is not None:
                    self.after_copy()
                cur.execute(merge_sql(self.contract, self.schema, staging, dedup=dedup))
                inserted = max(cur.rowcount, 0)
                cur.executemany(
                    f"INSERT INTO {self.ledger_table} (manifest_key, etag, rows, loaded_at)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (manifest_key) DO UPDATE"
                    " SET etag = EXCLUDED.etag, rows = EXCLUDED.rows,"
                    " loaded_at = EXCLUDED.loaded_at",
                    [(e.manifest_key, e.etag, e.rows, now) for e in entries],
                )
        except psycopg.Error as exc:
            raise WarehouseError(
                f"loading {len(entries)} manifests into {self.target} failed and was rolled back:"
                f" {exc}"
            ) from exc
        return inserted

    # -- query -----------------------------------------------------------------------------
    def query(self, sql: str) -> QueryResult:
        """Run ``sql`` in a read-only transaction that is always rolled back: a query reads.

        (``warehouse query`` also connects as the read-only reader role: two locks, not one.)"""
        conn = self.conn
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        conn.read_only = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql.encode())
                columns = [d.name for d in cur.description] if cur.description else []
                rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
        except psycopg.Error as exc:
            message = exc.diag.message_primary or str(exc).strip().splitlines()[0]
            raise WarehouseError(f"query failed: {redact(message)}") from None
        finally:
            conn.rollback()
            conn.read_only = None
        return QueryResult(columns, rows)
