"""Warehouse loading: committed lake flushes → PostgreSQL (local) or Redshift (AWS), exactly once.

* :mod:`etl.warehouse.base` — the :class:`Warehouse` protocol every backend meets; `QueryResult`
* :mod:`etl.warehouse.source` — manifests and Parquet objects on S3 (the loader's input)
* :mod:`etl.warehouse.ledger` — which manifest versions are loaded; batching
* :mod:`etl.warehouse.ddl` — DDL from the data contract; schema evolution
* :mod:`etl.warehouse.postgres` — binary COPY + MERGE into PostgreSQL
* :mod:`etl.warehouse.redshift` — COPY ... FORMAT AS PARQUET + MERGE through the Redshift Data API
* :mod:`etl.warehouse.loader` — rounds of loading, ``--follow``, backend selection
"""

from etl.warehouse.base import QueryResult, Warehouse
from etl.warehouse.ledger import LedgerEntry
from etl.warehouse.loader import (
    Loader,
    LoadSummary,
    build_loader,
    build_warehouse,
    warehouse_stats,
)
from etl.warehouse.source import FlushManifest, LakeSource, ManifestRef

__all__ = [
    "FlushManifest",
    "LakeSource",
    "LedgerEntry",
    "LoadSummary",
    "Loader",
    "ManifestRef",
    "QueryResult",
    "Warehouse",
    "build_loader",
    "build_warehouse",
    "warehouse_stats",
]
