"""Entry point of one record-processor child: ``python -m consumers.app``.

The MultiLangDaemon starts it once per leased shard; settings arrive as ``DRIFTLINE_*`` variables
inherited from ``driftline consume``. stdout is the daemon protocol: nothing else writes there.
``python -m consumers.app --serve NAME [FOLDER]`` is the fleet's server of warm processors
(:mod:`consumers.warm`): each processor it forks runs :func:`run`, its imports already done.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from consumers.flush import FlushPolicy
from consumers.processor import BatchObserver, KclRecordProcessor, LabelStage, ShardProcessor
from consumers.warm import RELAY_ENV
from etl.aws import AwsClients, error_code
from etl.contract import Contract, contract_for_settings
from etl.exceptions import ConfigError
from etl.label_lake import labels_contract
from etl.lake import WriterOptions, stream_tag, table_writer
from etl.logs import configure_json_logging
from etl.records import RecordDecoder
from etl.settings import Settings, load_settings

log = logging.getLogger("driftline.consumer")


def build_processor(settings: Settings, contract: Contract, clients: AwsClients) -> ShardProcessor:
    options = WriterOptions(
        compression=settings.parquet_compression,
        max_attempts=settings.s3_max_attempts,
        backoff_base_s=settings.s3_backoff_base_s,
        stream=stream_incarnation(settings, clients),
        fault=injected_fault(settings),
    )
    writer = table_writer(settings, contract, clients, options)
    policy = FlushPolicy(
        settings.flush_max_records, settings.flush_max_bytes, settings.flush_max_age_s
    )
    labels = build_label_stage(settings, contract, clients)
    label_writer = None
    if labels is not None:  # the label records' own table, written in the records' flush
        label_options = replace(options, fault=None)
        label_writer = table_writer(settings, labels_contract(contract), clients, label_options)
    return ShardProcessor(
        RecordDecoder(contract),
        writer,
        policy,
        observer=build_observer(settings, contract, clients),
        labels=labels,
        label_writer=label_writer,
    )


def model_pointer(settings: Settings, contract: Contract) -> Path:
    """The local serving backend's pointer (``retrain.wiring.pointer_path``)."""
    model = settings.model_name or contract.name.replace("_", "-")
    return Path(settings.model_cache_dir).resolve() / model / "CURRENT"


def build_label_stage(
    settings: Settings, contract: Contract, clients: AwsClients
) -> LabelStage | None:
    """Late labels on the same stream (``[labels] arrival = "late"``): label records routed
    before validation, and joined with the scored records when ``quality_scoring`` is on
    (docs/quality.md). Late labels on a second stream fail here, naming ``labels.stream``."""
    if not contract.labels.late:
        return None
    from consumers.late_quality import make_label_stage

    return make_label_stage(settings, contract, clients, model_pointer(settings, contract))


def stream_incarnation(settings: Settings, clients: AwsClients) -> str:
    """The stream incarnation's tag for the lake's keys (etl.lake.WriterOptions): from its ARN
    and creation time. "" (untagged keys) without a stream name, or when the stream cannot be
    described (with a warning)."""
    stream = settings.stream_name
    if not stream:
        return ""
    try:
        summary = clients.client("kinesis").describe_stream_summary(StreamName=stream)
    except (ClientError, BotoCoreError) as exc:
        log.warning(
            "stream not described: lake keys untagged by its incarnation",
            extra={"stream": stream, "error": error_code(exc) or str(exc)},
        )
        return ""
    desc = summary["StreamDescriptionSummary"]
    return stream_tag(desc["StreamARN"], desc["StreamCreationTimestamp"])


def injected_fault(settings: Settings) -> Callable[[str], None] | None:
    """Tests only (``DRIFTLINE_FAULT``): die at that point of a flush, once per token file.

    The token is created atomically by the process that fires, so a restarted processor (which
    replays the pending range it left) runs through and the run makes progress.
    """
    point, token = settings.fault, settings.fault_token
    if point is None or token is None:
        return None

    def fire(at: str) -> None:
        if at != point:
            return
        try:
            os.close(os.open(token, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return
        log.critical("injected fault: exiting", extra={"fault": at})
        logging.shutdown()
        os._exit(70)

    return fire


def build_observer(
    settings: Settings, contract: Contract, clients: AwsClients
) -> BatchObserver | None:
    """The on-stream drift window, when the drift package is available and configured, and the
    quality window when ``quality_scoring`` is on (docs/quality.md)."""
    try:
        from consumers.drift_observer import make_drift_observer
    except ImportError:
        return None
    drift = make_drift_observer(settings, contract, clients)
    if not settings.quality_scoring:
        return drift
    from consumers.quality_observer import Observers, make_quality_observer

    quality = make_quality_observer(settings, contract, clients, model_pointer(settings, contract))
    return Observers(drift, quality) if quality is not None else drift


def main() -> None:
    if sys.argv[1:2] == ["--serve"] and len(sys.argv) >= 3:
        from consumers.warm import serve

        # (argv[3], the fleet's folder, only names the fleet on the command line)
        serve(sys.argv[2], run)  # warm processors (consumers.warm); runs until killed
        return
    run()


def run() -> None:
    """One record processor, on stdin/stdout (the daemon's protocol, through the relay)."""
    configure_json_logging(component="consumer", pid=os.getpid())
    settings = load_settings()
    if settings.processor_log_file:
        # Its own file, every level; stderr (which the daemon re-logs at ERROR) only errors.
        configure_json_logging(
            component="consumer",
            pid=os.getpid(),
            log_file=settings.processor_log_file,
            stderr_level=logging.ERROR,
        )
    relay = os.environ.get(RELAY_ENV) or str(os.getppid())
    log.info("processor started", extra={"relay": int(relay)})
    clients = AwsClients.from_settings(settings)
    contract = contract_for_settings(settings, clients)
    if contract.labels.late:
        from consumers.late_quality import refuse_label_stream

        try:
            refuse_label_stream(contract)
        except ConfigError as exc:
            log.critical("%s", exc)
            raise SystemExit(2) from None
    from amazon_kclpy import kcl

    processor = KclRecordProcessor(lambda: build_processor(settings, contract, clients))
    kcl.KCLProcess(processor).run()


if __name__ == "__main__":
    main()
