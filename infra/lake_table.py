"""The Glue table of a stack's contract: ``driftline local up`` and ``driftline deploy`` make it.

The template cannot declare it (its columns come from the contract, which is the user's), so the
command that deploys the stack creates it right after, from the stack's outputs (and, for a
late-label contract, its labels table ``<contract>_labels``). A consumer that
still finds it missing creates it too (:meth:`etl.lake.GlueCatalog.create_table_if_missing`).
"""

from __future__ import annotations

from collections.abc import Mapping

from etl.aws import AwsClients
from etl.contract import Contract
from etl.label_lake import labels_contract
from etl.lake import GlueCatalog, LakeLayout
from etl.settings import Settings


def ensure_lake_table(
    clients: AwsClients, outputs: Mapping[str, str], contract: Contract, settings: Settings
) -> str:
    """Create (or update) the contract's table in the stack's Glue database; ``db.table``.

    A late-label contract's labels table (``<contract>_labels``, :mod:`etl.label_lake`) is
    created beside it."""
    database = outputs["GlueDatabase"]
    tables = [contract, labels_contract(contract)] if contract.labels.late else [contract]
    for table in tables:
        layout = LakeLayout(
            bucket=outputs["LakeBucket"],
            table=table.name,
            lake_prefix=settings.lake_prefix,
            dead_letter_prefix=settings.dead_letter_prefix,
            manifest_prefix=settings.manifest_prefix,
        )
        GlueCatalog(
            table,
            layout,
            database,
            clients.session,
            compression=settings.parquet_compression,
            endpoint_url=clients.endpoint_url,
        ).ensure_table()
    return f"{database}.{contract.name}"
