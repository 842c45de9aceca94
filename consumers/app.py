"""Entry point of one record-processor child: ``python -m consumers.app``.

The MultiLangDaemon starts it once per leased shard; settings arrive as ``DRIFTLINE_*`` variables
inherited from ``driftline consume``. stdout is the daemon protocol: nothing else writes there.
"""

from __future__ import annotations

import logging
import os

from consumers.flush import FlushPolicy
from consumers.processor import BatchObserver, KclRecordProcessor, ShardProcessor
from etl.aws import AwsClients
from etl.contract import Contract, contract_for_settings
from etl.lake import GlueCatalog, LakeLayout, LakeWriter
from etl.logs import configure_json_logging
from etl.records import RecordDecoder
from etl.settings import Settings, load_settings

log = logging.getLogger("driftline.consumer")


def build_processor(settings: Settings, contract: Contract, clients: AwsClients) -> ShardProcessor:
    layout = LakeLayout(
        bucket=settings.require("lake_bucket"),
        table=contract.name,
        lake_prefix=settings.lake_prefix,
        dead_letter_prefix=settings.dead_letter_prefix,
        manifest_prefix=settings.manifest_prefix,
    )
    catalog = GlueCatalog(
        contract,
        layout,
        settings.require("glue_database"),
        clients.session,
        compression=settings.parquet_compression,
        endpoint_url=settings.endpoint_url,
    )
    writer = LakeWriter(
        contract,
        layout,
        clients.client("s3"),
        catalog=catalog,
        compression=settings.parquet_compression,
        max_attempts=settings.s3_max_attempts,
        backoff_base_s=settings.s3_backoff_base_s,
    )
    policy = FlushPolicy(
        settings.flush_max_records, settings.flush_max_bytes, settings.flush_max_age_s
    )
    return ShardProcessor(
        RecordDecoder(contract),
        writer,
        policy,
        observer=build_observer(settings, contract, clients),
    )


def build_observer(
    settings: Settings, contract: Contract, clients: AwsClients
) -> BatchObserver | None:
    """The on-stream drift window, when the drift package is available and configured."""
    try:
        from consumers.drift_observer import make_drift_observer
    except ImportError:
        return None
    return make_drift_observer(settings, contract, clients)


def main() -> None:
    configure_json_logging(component="consumer", pid=os.getpid())
    settings = load_settings()
    clients = AwsClients.from_settings(settings)
    contract = contract_for_settings(settings, clients)
    from amazon_kclpy import kcl

    processor = KclRecordProcessor(lambda: build_processor(settings, contract, clients))
    kcl.KCLProcess(processor).run()


if __name__ == "__main__":
    main()
