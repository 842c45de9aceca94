"""The lake table in the Glue catalog: created from the contract, partitions registered per flush.

Plain Glue calls (the record processor never imports awswrangler and pandas: ~45 MiB of its
memory floor). Used by :class:`etl.lake.LakeWriter` at each flush and by ``driftline deploy``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from etl.aws import error_code
from etl.contract import PARTITION_DATE, PARTITION_HOUR, Contract

if TYPE_CHECKING:
    from etl.lake import LakeLayout

log = logging.getLogger(__name__)


class GlueCatalog:
    """The lake's Glue table and its partitions, with plain Glue calls (the record processor
    never imports awswrangler and pandas: ~45 MiB of its memory floor)."""

    def __init__(
        self,
        contract: Contract,
        layout: LakeLayout,
        database: str,
        boto3_session: Any,
        compression: str = "zstd",
        *,
        endpoint_url: str | None = None,
    ) -> None:
        self.contract = contract
        self.endpoint_url = endpoint_url
        self.layout = layout
        self.database = database
        self.session = boto3_session
        self.compression = compression
        self._known: set[tuple[str, str]] = set()
        self._descriptor: dict[str, Any] | None = None

    def table_input(self) -> dict[str, Any]:
        """The Glue ``TableInput`` of the lake table, from the contract: Parquet (Hive serde) at
        the table's location, partitioned by the event's date and hour (strings)."""
        compression = "none" if self.compression == "none" else self.compression
        data_params = {
            "classification": "parquet",
            "compressionType": compression,
            "typeOfData": "file",
        }
        return {
            "Name": self.layout.table,
            "Description": f"driftline lake table: contract {self.contract.name}"
            f" v{self.contract.version}",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {
                **data_params,
                "driftline_contract_hash": self.contract.hash,
                **self.projection(),
            },
            "PartitionKeys": [
                {"Name": PARTITION_DATE, "Type": "string"},
                {"Name": PARTITION_HOUR, "Type": "string"},
            ],
            "StorageDescriptor": {
                "Columns": [
                    {"Name": name, "Type": glue_type}
                    for name, glue_type in self.contract.glue_columns().items()
                ],
                "Location": self.layout.table_location,
                "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                "Compressed": self.compression != "none",
                "NumberOfBuckets": -1,
                "SerdeInfo": {
                    "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde."
                    "ParquetHiveSerDe",
                    "Parameters": {"serialization.format": "1"},
                },
                "StoredAsSubDirectories": False,
                "Parameters": {"CrawlerSchemaDeserializerVersion": "1.0", **data_params},
            },
        }

    def ensure_table(self) -> None:
        """Create the table from the contract, or bring an existing one up to it (idempotent)."""
        glue = self._glue()
        if not self.create_table_if_missing():
            glue.update_table(DatabaseName=self.database, TableInput=self.table_input())
            self._descriptor = None

    def create_table_if_missing(self) -> bool:
        """Create the table unless it exists; True when this call created it.

        Safe to race: every shard's processor may find the table missing at once; one
        ``CreateTable`` wins and the others' ``AlreadyExistsException`` means the same table
        (it is built from the same contract)."""
        try:
            self._glue().create_table(DatabaseName=self.database, TableInput=self.table_input())
        except ClientError as exc:
            if error_code(exc) == "AlreadyExistsException":
                return False
            raise
        log.info(
            "created the missing lake table",
            extra={"database": self.database, "table": self.layout.table},
        )
        return True

    def _glue(self) -> Any:
        return self.session.client("glue", **self._client_kwargs())

    def _table_descriptor(self) -> dict[str, Any]:
        glue = self._glue()
        try:
            table = glue.get_table(DatabaseName=self.database, Name=self.layout.table)["Table"]
        except ClientError as exc:
            if error_code(exc) != "EntityNotFoundException":
                raise
            # A missing table is made, never a crash-loop: the contract says what it holds.
            self.create_table_if_missing()
            table = glue.get_table(DatabaseName=self.database, Name=self.layout.table)["Table"]
        descriptor: dict[str, Any] = table["StorageDescriptor"]
        return descriptor

    def projection(self) -> dict[str, str]:
        """Athena partition projection: a new hour is queryable before (without) registration."""
        return {
            "projection.enabled": "true",
            f"projection.{PARTITION_DATE}.type": "date",
            f"projection.{PARTITION_DATE}.format": "yyyy-MM-dd",
            f"projection.{PARTITION_DATE}.range": "2020-01-01,NOW",
            f"projection.{PARTITION_DATE}.interval": "1",
            f"projection.{PARTITION_DATE}.interval.unit": "DAYS",
            f"projection.{PARTITION_HOUR}.type": "integer",
            f"projection.{PARTITION_HOUR}.range": "0,23",
            f"projection.{PARTITION_HOUR}.digits": "2",
            "storage.location.template": self.layout.partition_location(
                f"${{{PARTITION_DATE}}}", f"${{{PARTITION_HOUR}}}"
            ),
        }

    def add_partitions(self, partitions: Sequence[tuple[str, str]]) -> None:
        """Register new (date, hour) partitions with the table's own storage descriptor.

        Plain Glue ``BatchCreatePartition`` (what ``wr.catalog.add_parquet_partitions`` does) so
        the record processor never imports awswrangler and pandas (~45 MiB of its memory floor).
        """
        new = [p for p in partitions if p not in self._known]
        if not new:
            return
        glue = self._glue()
        if self._descriptor is None:
            self._descriptor = self._table_descriptor()
        base = self._descriptor
        inputs = [
            {
                "Values": [d, h],
                "StorageDescriptor": {
                    **{
                        k: base[k]
                        for k in ("InputFormat", "OutputFormat", "SerdeInfo")
                        if k in base
                    },
                    "Columns": base.get("Columns", []),
                    "Location": self.layout.partition_location(d, h),
                    "Compressed": base.get("Compressed", False),
                },
            }
            for d, h in new
        ]
        for i in range(0, len(inputs), 100):
            resp = glue.batch_create_partition(
                DatabaseName=self.database,
                TableName=self.layout.table,
                PartitionInputList=inputs[i : i + 100],
            )
            errors = [
                e
                for e in resp.get("Errors", [])
                if e.get("ErrorDetail", {}).get("ErrorCode") != "AlreadyExistsException"
            ]
            if errors:
                raise ClientError(
                    {
                        "Error": {
                            "Code": errors[0]["ErrorDetail"].get("ErrorCode", "Glue"),
                            "Message": str(errors[0]["ErrorDetail"]),
                        }
                    },
                    "BatchCreatePartition",
                )
        self._known.update(new)

    def _client_kwargs(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url} if self.endpoint_url else {}
