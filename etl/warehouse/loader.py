"""The warehouse loader: new committed manifests → warehouse, in batches, exactly once in effect.

One round (:meth:`Loader.run_once`): list the table's manifests, drop those whose (key, ETag) the
ledger already holds, read the rest, keep the committed ones, and load them in batches of
``batch_manifests`` manifests — one transaction per batch (staging COPY, MERGE on
``(shard_id, sequence_number)``, ledger rows). :meth:`Loader.follow` repeats rounds until stopped.

The warehouse behind it is a :class:`Warehouse`: :class:`~etl.warehouse.postgres.PostgresWarehouse`
locally, :class:`~etl.warehouse.redshift.RedshiftDataWarehouse` on AWS.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from etl.contract import Contract
from etl.exceptions import ConfigError
from etl.settings import Settings
from etl.warehouse import ledger
from etl.warehouse.base import Warehouse
from etl.warehouse.source import LakeSource

log = logging.getLogger(__name__)


@dataclass
class LoadSummary:
    manifests: int = 0
    rows: int = 0
    inserted: int = 0
    batches: int = 0
    pending: int = 0
    altered: int = 0
    seconds: float = 0.0

    def add(self, other: LoadSummary) -> None:
        for key in ("manifests", "rows", "inserted", "batches", "pending", "altered"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.seconds = round(self.seconds + other.seconds, 3)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Loader:
    """Loads one table's lake into one warehouse."""

    def __init__(
        self, warehouse: Warehouse, source: LakeSource, *, batch_manifests: int = 50
    ) -> None:
        if batch_manifests <= 0:
            raise ConfigError("warehouse_batch_manifests", f"must be > 0, got {batch_manifests}")
        self.warehouse = warehouse
        self.source = source
        self.batch_manifests = batch_manifests
        self._ensured = False
        #: Totals of every round so far (read it after interrupting :meth:`follow`).
        self.total = LoadSummary()

    def run_once(self) -> LoadSummary:
        t0 = time.perf_counter()
        summary = LoadSummary()
        if not self._ensured:
            summary.altered = len(self.warehouse.ensure_tables())
            self._ensured = True
        loaded = self.warehouse.loaded()
        refs = ledger.to_read(self.source.list_manifests(), loaded)
        manifests = self.source.read_manifests([r.key for r in refs])
        todo = ledger.to_load(manifests, loaded)
        summary.pending = sum(1 for m in manifests if not m.committed)
        for batch in ledger.batches(todo, self.batch_manifests):
            inserted = self.warehouse.load(batch)
            summary.batches += 1
            summary.manifests += len(batch)
            summary.rows += sum(m.rows for m in batch)
            summary.inserted += inserted
            log.info(
                "loaded batch of %d manifests: %d rows, %d new",
                len(batch),
                sum(m.rows for m in batch),
                inserted,
            )
        summary.seconds = round(time.perf_counter() - t0, 3)
        self.total.add(summary)
        return summary

    def follow(
        self,
        interval_s: float = 2.0,
        stop: threading.Event | None = None,
        on_round: Callable[[LoadSummary], None] | None = None,
    ) -> LoadSummary:
        """Run rounds every ``interval_s`` until ``stop`` is set; return the totals so far."""
        stop = stop or threading.Event()
        for summary in self._rounds(interval_s, stop):
            if on_round is not None:
                on_round(summary)
        return self.total

    def _rounds(self, interval_s: float, stop: threading.Event) -> Iterator[LoadSummary]:
        while not stop.is_set():
            yield self.run_once()
            stop.wait(interval_s)


def warehouse_stats(
    warehouse: Warehouse, contract: Contract, schema: str, backend: str = "postgres"
) -> dict[str, float | int | None]:
    """``warehouse_rows``, ``warehouse_duplicates``, ``warehouse_lag_p50_s``/``_p95_s`` (demo)."""
    from etl.warehouse.ddl import Dialect, stats_sql

    dialect = Dialect.POSTGRES if backend == "postgres" else Dialect.REDSHIFT
    result = warehouse.query(stats_sql(contract, schema, dialect))
    row = dict(zip(result.columns, result.rows[0], strict=True))
    out: dict[str, float | int | None] = {
        "warehouse_rows": int(row["warehouse_rows"]),
        "warehouse_duplicates": int(row["warehouse_duplicates"]),
    }
    for key in ("warehouse_lag_p50_s", "warehouse_lag_p95_s"):
        out[key] = None if row[key] is None else round(float(row[key]), 3)
    return out


def build_warehouse(
    settings: Settings, contract: Contract, clients: Any, source: LakeSource | None = None
) -> Warehouse:
    """The warehouse ``settings`` names (``warehouse_backend``), with its clients."""
    if settings.warehouse_backend == "postgres":
        from etl.warehouse.postgres import PostgresWarehouse

        dsn = settings.require("warehouse_dsn")
        return PostgresWarehouse(dsn, contract, schema=settings.warehouse_schema, source=source)
    from etl.warehouse.redshift import RedshiftDataWarehouse, RedshiftTarget

    target = RedshiftTarget(
        workgroup=settings.require("redshift_workgroup"),
        database=settings.require("redshift_database"),
        secret_arn=settings.redshift_secret_arn,
        iam_role=settings.redshift_iam_role,
        schema=settings.warehouse_schema,
    )
    return RedshiftDataWarehouse(
        clients.client("redshift-data"),
        clients.client("s3"),
        contract,
        target,
        bucket=settings.require("lake_bucket"),
    )


def build_loader(settings: Settings, contract: Contract, clients: Any) -> Loader:
    source = LakeSource(
        clients.client("s3"),
        settings.require("lake_bucket"),
        contract.name,
        manifest_prefix=settings.manifest_prefix,
    )
    return Loader(
        build_warehouse(settings, contract, clients, source),
        source,
        batch_manifests=settings.warehouse_batch_manifests,
    )
