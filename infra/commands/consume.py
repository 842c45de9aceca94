"""``driftline consume [--workers K]``: run K KCL MultiLangDaemons until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from consumers.fleet import ConsumerFleet
from infra.argtypes import at_least
from infra.context import add_contract_option, resolve_settings, state_dir


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


def _consume(args: argparse.Namespace) -> int:
    settings, _ = resolve_settings(args=args)
    for key in ("stream_name", "lake_bucket", "glue_database", "application_name"):
        settings.require(key)
    fleet = ConsumerFleet(
        settings,
        args.workers,
        args.work_dir or state_dir() / "consumers",
        log_level=args.kcl_log_level,
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
        while not stop.wait(2.0):
            fleet.supervise_once()
    finally:
        fleet.stop()
    return 0
