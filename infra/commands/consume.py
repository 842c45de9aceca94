"""``driftline consume [--workers K]``: run K KCL MultiLangDaemons until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from consumers.fleet import ConsumerFleet
from consumers.late_quality import refuse_label_stream
from etl.aws import error_code
from etl.contract import contract_for_settings
from etl.exceptions import ConfigError
from etl.settings import Settings
from infra.argtypes import at_least
from infra.context import add_contract_option, clients_for, resolve_settings, state_dir


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "consume", help="run KCL consumer workers (real MultiLangDaemon)"
    )
    p.add_argument(
        "--workers", type=at_least(1), default=1, help="daemons to run on this host (default 1)"
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="properties/log folder (default .driftline/consumers)",
    )
    p.add_argument("--kcl-log-level", default="WARN", help="KCL log level (default WARN)")
    add_contract_option(p)
    p.set_defaults(func=_consume)


def _lease_cap(settings: Settings, workers: int) -> int:
    """ceil(open shards / workers): spreads the leases at start (no worker takes them all and
    hands them over later), and keeps the KCL from moving leases between this host's workers."""
    if workers == 1:
        return 0
    kinesis = clients_for(settings).client("kinesis")
    stream = settings.require("stream_name")
    try:
        summary = kinesis.describe_stream_summary(StreamName=stream)
    except ClientError as exc:
        raise ConfigError(
            "stream_name",
            f"cannot describe stream {stream!r} ({error_code(exc)}); check the name"
            " (DRIFTLINE_STREAM_NAME) and that the stack is up (`driftline local up`/`deploy`)",
        ) from None
    shards = int(summary["StreamDescriptionSummary"]["OpenShardCount"])
    return -(-shards // workers)


def _consume(args: argparse.Namespace) -> int:
    settings, _ = resolve_settings(args=args)
    for key in ("stream_name", "lake_bucket", "glue_database", "application_name"):
        settings.require(key)
    # late labels on a second stream are refused here, naming labels.stream, not in a child
    refuse_label_stream(contract_for_settings(settings, clients_for(settings)))
    fleet = ConsumerFleet(
        settings,
        args.workers,
        args.work_dir or state_dir() / "consumers",
        log_level=args.kcl_log_level,
        max_leases=_lease_cap(settings, args.workers),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fleet.start()
    print(
        f"consuming {settings.stream_name} with {args.workers} worker(s): pids {fleet.pids}",
        file=sys.stderr,
    )
    try:
        while not stop.wait(0.5):  # a dead daemon is restarted within half a second
            fleet.supervise_once()
    finally:
        fleet.stop()
    return 0
