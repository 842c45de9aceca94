"""Athena's stand-in: DuckDB over the lake's Parquet (and dead-letter JSON lines), read by pyarrow.

Each lake table ``lake/<table>/`` becomes a DuckDB view ``<table>`` (columns as in Glue, plus the
string partitions ``event_date`` and ``event_hour``), and its dead letters
``dead-letters/<table>/`` the view ``<table>_dead_letters``. The data is read through pyarrow's
``S3FileSystem`` (with the emulator's ``endpoint_override`` locally; pyarrow ignores
``AWS_ENDPOINT_URL``) as a lazy dataset, so DuckDB pushes projections and partition filters down;
DuckDB's own ``httpfs`` is not used because it downloads an extension at run time.

Which objects a table's view reads follows the compaction visibility rule
(:func:`etl.compaction.resolve_visible`): the objects are listed, then the committed compaction
manifests read, so a compaction running meanwhile shows either the small objects or the compacted
ones, never both. ``<table>_current`` is the same view under the name Athena's compaction-aware
view has, so SQL written for one runs on the other. Dead-letter lines are read in blocks of
:data:`DEAD_LETTER_BLOCK_BYTES`: a dead-lettered 1 MiB Kinesis record is a ~1.4 MiB line (base64).

The SQL files in ``etl/sql/`` are rendered for the contract (:mod:`etl.analytics`) and run through
:meth:`LakeQuery.run_file`.

>>> lake = LakeQuery("my-lake-bucket", clients=AwsClients(endpoint_url="http://127.0.0.1:5000"))
>>> lake.query("SELECT count(*) FROM card_transactions").rows   # doctest: +SKIP
[(1200,)]
"""

from __future__ import annotations

import logging
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.json as pajson

from etl.analytics import current_view, render, sql_file
from etl.aws import AwsClients
from etl.compaction import TableLocation, lake_dataset, list_objects, resolve_visible
from etl.contract import PARTITION_DATE, Contract
from etl.exceptions import DriftlineError, WarehouseError
from etl.export import ANALYTICS_PREFIX, SCHEMAS, ExportTable
from etl.settings import Settings
from etl.warehouse.base import QueryResult

log = logging.getLogger(__name__)

DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("payload", pa.string()),
        ("payload_base64", pa.string()),
        ("shard_id", pa.string()),
        ("sequence_number", pa.string()),
        ("partition_key", pa.string()),
        ("approximate_arrival_time", pa.string()),
        ("dead_at", pa.string()),
    ]
)
_DAY_PARTITIONS = pa.schema([(PARTITION_DATE, pa.string())])
#: The largest dead-letter line the reader takes: a 1 MiB record is ~1.4 MiB in base64, and a text
#: payload's JSON escaping can double it (the default 1 MiB block fails "straddling object").
DEAD_LETTER_BLOCK_BYTES = 16 * 1024 * 1024

__all__ = ["DEAD_LETTER_SCHEMA", "LakeQuery", "lock_down", "render", "sql_file"]


#: Applied in this order once the views exist; the last one freezes every setting.
LOCKDOWN = (
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET lock_configuration = true",
)


def lock_down(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """No files, no network, no extensions, no setting changes from here on.

    Call it after the lake's views are registered: they read through pyarrow (already opened
    datasets), so queries over them still work, while ``read_text('/etc/passwd')``, ``COPY ... TO``,
    ``ATTACH``, ``INSTALL``/``LOAD`` and ``SET enable_external_access = true`` are refused.
    """
    for statement in LOCKDOWN:
        con.execute(statement)
    return con


class LakeQuery:
    """A DuckDB connection with the lake's tables registered as views."""

    def __init__(
        self,
        bucket: str,
        *,
        lake_prefix: str = "lake",
        dead_letter_prefix: str = "dead-letters",
        manifest_prefix: str = "manifests",
        clients: AwsClients | None = None,
        contract: Contract | None = None,
        filesystem: pafs.FileSystem | None = None,
    ) -> None:
        self.bucket = bucket
        self.lake_prefix = lake_prefix
        self.dead_letter_prefix = dead_letter_prefix
        self.manifest_prefix = manifest_prefix
        self.contract = contract
        clients = clients or AwsClients()
        if filesystem is None:
            filesystem = pafs.S3FileSystem(**clients.s3_filesystem_kwargs())
        self.fs = filesystem
        self.s3 = clients.client("s3")
        self._con: duckdb.DuckDBPyConnection | None = None
        #: The datasets behind the views (kept alive as long as the connection).
        self.datasets: dict[str, ds.Dataset] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, clients: AwsClients | None = None, contract: Contract | None = None
    ) -> LakeQuery:
        return cls(
            settings.require("lake_bucket"),
            lake_prefix=settings.lake_prefix,
            dead_letter_prefix=settings.dead_letter_prefix,
            manifest_prefix=settings.manifest_prefix,
            clients=clients or AwsClients.from_settings(settings),
            contract=contract,
        )

    def _subfolders(self, prefix: str) -> list[str]:
        selector = pafs.FileSelector(f"{self.bucket}/{prefix}", allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise WarehouseError(f"listing s3://{self.bucket}/{prefix}/ failed: {exc}") from None
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def tables(self) -> list[str]:
        """Lake tables: folders under ``<lake_prefix>/``, plus the contract's even if empty."""
        found = set(self._subfolders(self.lake_prefix))
        if self.contract is not None:
            found.add(self.contract.name)
        return sorted(found)

    def visible_keys(self, table: str) -> list[str]:
        """The table's object keys a reader reads now (the compaction visibility rule)."""
        loc = TableLocation(self.bucket, table, self.lake_prefix, self.manifest_prefix)
        return resolve_visible(self.s3, loc)

    def _rows_dataset(self, table: str) -> ds.Dataset:
        schema = None
        if self.contract is not None and table == self.contract.name:
            schema = self.contract.arrow_schema(with_metadata=True, with_partitions=True)
        loc = TableLocation(self.bucket, table, self.lake_prefix, self.manifest_prefix)
        return lake_dataset(self.s3, self.fs, loc, schema=schema)

    def _exported_dataset(self, table: ExportTable) -> ds.Dataset:
        """An exported table (``etl.export``): every day's object; empty until an export ran."""
        schema = pa.schema([*SCHEMAS[table], (PARTITION_DATE, pa.string())])
        prefix = f"{ANALYTICS_PREFIX}/{table}/"
        try:
            keys = [k.key for k in list_objects(self.s3, self.bucket, prefix)]
        except DriftlineError as exc:
            raise WarehouseError(f"reading exported table {table!r} failed: {exc}") from None
        keys = [k for k in keys if k.endswith(".parquet")]
        if not keys:
            return self._empty(schema)
        return ds.dataset(
            [f"{self.bucket}/{k}" for k in keys],
            filesystem=self.fs,
            format="parquet",
            partitioning=ds.partitioning(_DAY_PARTITIONS, flavor="hive"),
            partition_base_dir=f"{self.bucket}/{prefix}".rstrip("/"),
            schema=schema,
        )

    def _dead_letter_dataset(self, table: str) -> ds.Dataset:
        fmt = ds.JsonFileFormat(
            parse_options=pajson.ParseOptions(
                explicit_schema=DEAD_LETTER_SCHEMA, unexpected_field_behavior="ignore"
            ),
            read_options=pajson.ReadOptions(block_size=DEAD_LETTER_BLOCK_BYTES),
        )
        return ds.dataset(
            f"{self.bucket}/{self.dead_letter_prefix}/{table}",
            filesystem=self.fs,
            format=fmt,
            partitioning=ds.partitioning(_DAY_PARTITIONS, flavor="hive"),
            schema=pa.schema([*DEAD_LETTER_SCHEMA, (PARTITION_DATE, pa.string())]),
        )

    def _empty(self, schema: pa.Schema) -> ds.Dataset:
        return ds.dataset(schema.empty_table())

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, views registered on first use."""
        if self._con is None:
            con = duckdb.connect(":memory:")
            for table in self.tables():
                try:
                    rows = self._rows_dataset(table)
                except FileNotFoundError:
                    continue
                except (OSError, pa.ArrowInvalid, DriftlineError) as exc:
                    raise WarehouseError(f"reading lake table {table!r} failed: {exc}") from None
                try:
                    dead = self._dead_letter_dataset(table)
                except (OSError, pa.ArrowInvalid):
                    dead = self._empty(
                        pa.schema([*DEAD_LETTER_SCHEMA, (PARTITION_DATE, pa.string())])
                    )
                self.datasets[table] = rows
                self.datasets[f"{table}_dead_letters"] = dead
                con.register(table, rows)
                con.register(current_view(table), rows)
                con.register(f"{table}_dead_letters", dead)
            for exported in ExportTable:
                self.datasets[exported] = self._exported_dataset(exported)
                con.register(str(exported), self.datasets[exported])
            self._con = lock_down(con)
        return self._con

    def query(self, sql: str, params: list[Any] | None = None) -> QueryResult:
        try:
            cur = self.connection.execute(sql, params)
            columns = [d[0] for d in cur.description] if cur.description else []
            rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
        except duckdb.Error as exc:
            raise WarehouseError(f"lake query failed: {exc}") from None
        return QueryResult(columns, rows)

    def run_file(self, name: str) -> QueryResult:
        """Run ``etl/sql/<name>.sql`` rendered for the contract's table."""
        if self.contract is None:
            raise WarehouseError(f"run_file({name!r}) renders the SQL from a contract; pass one")
        return self.query(render(sql_file(name), self.contract))

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
