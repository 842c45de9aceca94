"""Redshift through the Redshift Data API: the only module with Redshift-specific SQL.

A batch of flush manifests is loaded by one ``BatchExecuteStatement`` (the Data API runs a batch as
one transaction, in one session, so temp tables live across its statements)::

    LOCK target                                            -- one loader at a time
    CREATE TEMP TABLE staging (lake columns, Parquet order) DISTKEY(sequence_number)
    COPY staging FROM 's3://<bucket>/<copy manifest>' IAM_ROLE ... FORMAT AS PARQUET MANIFEST
    CREATE TEMP TABLE staging_dedup ... one row per (shard_id, sequence_number)
    MERGE INTO target USING staging_dedup ON (shard_id, sequence_number)
        WHEN MATCHED THEN UPDATE SET shard_id = s.shard_id      -- a no-op: Redshift's MERGE
        WHEN NOT MATCHED THEN INSERT ...                        -- requires a MATCHED clause
    DELETE FROM load_ledger WHERE manifest_key IN (...)
    INSERT INTO load_ledger VALUES (...)
    DROP TABLE staging_dedup; DROP TABLE staging

Why each piece: COPY of Parquet from a list of objects needs a Redshift *COPY manifest*
(``{"entries": [{"url", "mandatory", "meta": {"content_length"}}]}``, content length required for
columnar formats); the loader writes it to ``warehouse/copy-manifests/<table>/<batch>.json`` with
a name derived from the batch's manifest keys and ETags, so a retry rewrites the same object.
Redshift's MERGE takes only a table as source (no subquery), hence the de-duplicated temp table:
two flushes of one batch may overlap after a replay with other boundaries. The statement's
``ClientToken`` is derived from the batch too, so a retried call is not run twice.

Known limit: COPY from Parquet maps columns by position, so every object of a batch must have the
current contract's columns. After adding a field, objects written before the change fail to COPY;
load them before changing the contract (the PostgreSQL path conforms old objects itself).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from etl.contract import SEQUENCE_NUMBER, SHARD_ID, Contract
from etl.exceptions import WarehouseError
from etl.warehouse import ddl
from etl.warehouse.base import QueryResult
from etl.warehouse.ddl import Dialect
from etl.warehouse.ledger import LedgerEntry
from etl.warehouse.source import FlushManifest

log = logging.getLogger(__name__)

COPY_MANIFEST_PREFIX = "warehouse/copy-manifests"
_DONE = ("FINISHED", "FAILED", "ABORTED")


@dataclass(frozen=True, slots=True)
class RedshiftTarget:
    """Where and as whom the Data API runs statements (Redshift Serverless)."""

    workgroup: str
    database: str
    #: None: the Data API signs in with the caller's IAM identity (serverless temporary
    #: credentials); else a Secrets Manager secret, e.g. the namespace's managed admin password.
    secret_arn: str | None = None
    iam_role: str = "default"
    schema: str = "driftline"

    def call_args(self) -> dict[str, str]:
        args = {"WorkgroupName": self.workgroup, "Database": self.database}
        if self.secret_arn:
            args["SecretArn"] = self.secret_arn
        return args


def literal(value: str) -> str:
    """A SQL string literal (the batch API takes no per-statement parameters)."""
    if "\x00" in value:
        raise WarehouseError(f"cannot put a NUL byte into SQL: {value!r}")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def iam_role_clause(iam_role: str) -> str:
    return "IAM_ROLE default" if iam_role == "default" else f"IAM_ROLE {literal(iam_role)}"


def batch_id(manifests: Sequence[FlushManifest]) -> str:
    digest = hashlib.sha256()
    for m in sorted(manifests, key=lambda m: m.key):
        digest.update(f"{m.key}\n{m.etag}\n".encode())
    return digest.hexdigest()[:32]


def copy_manifest(
    bucket: str, manifests: Sequence[FlushManifest], sizes: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The Redshift COPY manifest listing every object of the batch (content length required).

    Sizes come from the flush manifest (``bytes``), else from ``sizes`` (key → bytes, e.g. from
    HeadObject).
    """
    sizes = sizes or {}
    entries = []
    for m in manifests:
        for obj in m.objects:
            size = obj.bytes or sizes.get(obj.key, 0)
            if size <= 0:
                raise WarehouseError(
                    f"manifest {m.key!r} lists {obj.key!r} without its size ('bytes'), which a"
                    " Parquet COPY manifest needs, and no size was looked up for it"
                )
            entries.append(
                {
                    "url": f"s3://{bucket}/{obj.key}",
                    "mandatory": True,
                    "meta": {"content_length": size},
                }
            )
    return {"entries": entries}


def copy_manifest_key(table: str, manifests: Sequence[FlushManifest]) -> str:
    return f"{COPY_MANIFEST_PREFIX}/{table}/{batch_id(manifests)}.json"


def setup_statements(contract: Contract, schema: str) -> list[str]:
    return [
        ddl.create_schema_sql(schema, Dialect.REDSHIFT),
        ddl.create_table_sql(contract, schema, Dialect.REDSHIFT),
        ddl.create_ledger_sql(schema, Dialect.REDSHIFT),
    ]


def load_statements(
    contract: Contract,
    schema: str,
    copy_manifest_url: str,
    iam_role: str,
    entries: Sequence[LedgerEntry],
) -> list[str]:
    """The statements of one batch, in order (pure: checked for shape in the unit tests)."""
    rs = Dialect.REDSHIFT
    target = ddl.qualified(schema, contract.name, rs)
    ledger_table = ddl.qualified(schema, ddl.LEDGER_TABLE, rs)
    lake = ddl.lake_columns(contract, rs)
    names = [c.name for c in lake]
    col_list = ddl.idents(names, rs)
    staging = ddl.ident(f"staging_{contract.name}", rs)
    dedup = ddl.ident(f"staging_{contract.name}_dedup", rs)
    col_ddl = ", ".join(f"{ddl.ident(c.name, rs)} {c.sql_type}" for c in lake)
    shard, seq = ddl.ident(SHARD_ID, rs), ddl.ident(SEQUENCE_NUMBER, rs)
    identity = ddl.idents(list(ddl.IDENTITY), rs)
    keys = ", ".join(literal(e.manifest_key) for e in entries)
    values = ", ".join(
        f"({literal(e.manifest_key)}, {literal(e.etag)}, {int(e.rows)}, GETDATE())" for e in entries
    )
    return [
        f"LOCK {target}",
        f"CREATE TEMP TABLE {staging} ({col_ddl}) DISTKEY ({seq})",
        f"COPY {staging} FROM {literal(copy_manifest_url)} {iam_role_clause(iam_role)}"
        " FORMAT AS PARQUET MANIFEST",
        f"CREATE TEMP TABLE {dedup} DISTKEY ({seq}) AS SELECT {col_list} FROM"
        f" (SELECT {col_list}, ROW_NUMBER() OVER (PARTITION BY {identity}"
        f" ORDER BY {ddl.ident(names[-1], rs)} DESC) AS rn FROM {staging}) WHERE rn = 1",
        f"MERGE INTO {target} USING {dedup} AS s"
        f" ON {ddl.identity_match(target, 's', rs)}"
        f" WHEN MATCHED THEN UPDATE SET {shard} = s.{shard}"
        f" WHEN NOT MATCHED THEN INSERT ({col_list}, {ddl.ident(ddl.LOADED_AT, rs)})"
        f" VALUES ({ddl.idents(names, rs, 's.')}, GETDATE())",
        f"DELETE FROM {ledger_table} WHERE manifest_key IN ({keys})",
        f"INSERT INTO {ledger_table} (manifest_key, etag, rows, loaded_at) VALUES {values}",
        f"DROP TABLE {dedup}",
        f"DROP TABLE {staging}",
    ]


#: Index of the MERGE in :func:`load_statements` (its ResultRows is the number of rows touched).
MERGE_INDEX = 4


def _field_value(cell: dict[str, Any]) -> Any:
    if cell.get("isNull"):
        return None
    for key in ("stringValue", "longValue", "doubleValue", "booleanValue", "blobValue"):
        if key in cell:
            return cell[key]
    return None


@dataclass(frozen=True, slots=True)
class Polling:
    """How a statement is waited for: ``DescribeStatement`` every ``first_s``, doubling up to
    ``max_s``, for at most ``timeout_s``."""

    first_s: float = 0.25
    max_s: float = 5.0
    timeout_s: float = 900.0
    sleep: Callable[[float], None] = time.sleep


class RedshiftDataWarehouse:
    """Loads flush manifests into Redshift via the Data API; clients are injected."""

    def __init__(
        self,
        client: Any,
        s3: Any,
        contract: Contract,
        target: RedshiftTarget,
        *,
        bucket: str,
        polling: Polling | None = None,
    ) -> None:
        self.client = client
        self.s3 = s3
        self.contract = contract
        self.target = target
        self.bucket = bucket
        polling = polling or Polling()
        self.poll_first_s = polling.first_s
        self.poll_max_s = polling.max_s
        self.timeout_s = polling.timeout_s
        self.sleep = polling.sleep

    @property
    def table(self) -> str:
        return ddl.qualified(self.target.schema, self.contract.name, Dialect.REDSHIFT)

    def close(self) -> None:
        return None

    # -- Data API plumbing ------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise WarehouseError(f"Redshift Data API {what} failed: {exc}") from exc

    def wait(self, statement_id: str) -> dict[str, Any]:
        """Poll ``DescribeStatement`` with capped exponential backoff until the statement ends."""
        delay = self.poll_first_s
        waited = 0.0
        while True:
            desc = self._call("DescribeStatement", self.client.describe_statement, Id=statement_id)
            status = desc["Status"]
            if status == "FINISHED":
                return desc
            if status in ("FAILED", "ABORTED"):
                failed = [s for s in desc.get("SubStatements", []) if s.get("Status") == "FAILED"]
                detail = failed[0].get("QueryString", "")[:200] if failed else ""
                error = desc.get("Error", "no error given")
                raise WarehouseError(
                    f"Redshift statement {statement_id} {status}: {error}"
                    + (f" (in: {detail})" if detail else "")
                    + "; the batch was rolled back, the next run retries it"
                )
            if waited >= self.timeout_s:
                raise WarehouseError(
                    f"Redshift statement {statement_id} still {status} after {waited:.0f}s;"
                    " check the workgroup's load (timeout_s raises the limit)"
                )
            self.sleep(delay)
            waited += delay
            delay = min(delay * 2, self.poll_max_s)

    def execute(self, sql: str) -> dict[str, Any]:
        resp = self._call(
            "ExecuteStatement", self.client.execute_statement, Sql=sql, **self.target.call_args()
        )
        return self.wait(resp["Id"])

    def batch(self, sqls: Sequence[str], token: str | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Sqls": list(sqls), **self.target.call_args()}
        if token is not None:
            kwargs["ClientToken"] = token
        resp = self._call("BatchExecuteStatement", self.client.batch_execute_statement, **kwargs)
        return self.wait(resp["Id"])

    def fetch(self, statement_id: str) -> QueryResult:
        columns: list[str] = []
        rows: list[tuple[Any, ...]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Id": statement_id}
            if token:
                kwargs["NextToken"] = token
            page = self._call("GetStatementResult", self.client.get_statement_result, **kwargs)
            columns = columns or [c["name"] for c in page.get("ColumnMetadata", [])]
            rows += [tuple(_field_value(c) for c in rec) for rec in page["Records"]]
            token = page.get("NextToken")
            if not token:
                return QueryResult(columns, rows)

    # -- Warehouse protocol ------------------------------------------------------------------
    def query(self, sql: str) -> QueryResult:
        desc = self.execute(sql)
        if not desc.get("HasResultSet"):
            return QueryResult([], [])
        return self.fetch(desc["Id"])

    def existing_columns(self) -> dict[str, str]:
        schema, table = self.target.schema, self.contract.name
        result = self.query(
            "SELECT column_name, data_type FROM information_schema.columns"
            f" WHERE table_schema = {literal(schema)} AND table_name = {literal(table)}"
        )
        return {str(r[0]): str(r[1]) for r in result.rows}

    def ensure_tables(self) -> list[str]:
        self.batch(setup_statements(self.contract, self.target.schema))
        alters = ddl.plan_evolution(
            self.contract, self.target.schema, self.existing_columns(), Dialect.REDSHIFT
        )
        old_keys = self.query(ddl.primary_key_sql(self.contract, self.target.schema)).rows
        for (old_key,) in old_keys:  # keyed on (shard, sequence) only: see etl.warehouse.ddl
            alters += ddl.identity_migration_sql(
                self.contract, self.target.schema, Dialect.REDSHIFT, str(old_key)
            )
        if alters:
            # Redshift runs ALTER TABLE ADD COLUMN outside multi-statement transactions: one each.
            for stmt in alters:
                log.info("schema evolution: %s", stmt)
                self.execute(stmt)
        return alters

    def loaded(self) -> dict[str, str]:
        ledger_table = ddl.qualified(self.target.schema, ddl.LEDGER_TABLE, Dialect.REDSHIFT)
        result = self.query(f"SELECT manifest_key, etag FROM {ledger_table}")
        return {str(k): str(e) for k, e in result.rows}

    def object_sizes(self, manifests: Sequence[FlushManifest]) -> dict[str, int]:
        """HeadObject sizes of the objects whose flush manifest does not record ``bytes``."""
        sizes: dict[str, int] = {}
        for obj in (o for m in manifests for o in m.objects if o.bytes <= 0):
            try:
                head = self.s3.head_object(Bucket=self.bucket, Key=obj.key)
            except (ClientError, BotoCoreError) as exc:
                raise WarehouseError(
                    f"s3://{self.bucket}/{obj.key}, listed by a committed manifest, is unreadable:"
                    f" {exc}"
                ) from exc
            sizes[obj.key] = int(head["ContentLength"])
        return sizes

    def load(self, manifests: Sequence[FlushManifest]) -> int:
        key = copy_manifest_key(self.contract.name, manifests)
        entries = copy_manifest(self.bucket, manifests, self.object_sizes(manifests))
        body = json.dumps(entries, sort_keys=True).encode()
        try:
            self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json"
            )
        except (ClientError, BotoCoreError) as exc:
            raise WarehouseError(
                f"writing the COPY manifest s3://{self.bucket}/{key} failed: {exc}"
            ) from exc
        sqls = load_statements(
            self.contract,
            self.target.schema,
            f"s3://{self.bucket}/{key}",
            self.target.iam_role,
            [LedgerEntry.of(m) for m in manifests],
        )
        desc = self.batch(sqls, token=batch_id(manifests))
        subs = desc.get("SubStatements", [])
        return int(subs[MERGE_INDEX].get("ResultRows", 0)) if len(subs) > MERGE_INDEX else 0
