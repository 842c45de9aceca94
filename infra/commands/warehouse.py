"""``driftline warehouse load [--follow]`` and ``driftline warehouse query "SQL"``.

The warehouse is the one ``warehouse_backend`` names: the embedded PostgreSQL of the local stack
(its DSN comes from the stack's state, or ``DRIFTLINE_WAREHOUSE_DSN``), or Redshift through the Data
API (``DRIFTLINE_WAREHOUSE_BACKEND=redshift-data`` plus workgroup, database and secret).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from etl.contract import contract_for_settings
from etl.settings import Settings
from etl.warehouse import LoadSummary, build_loader, build_warehouse
from infra.argtypes import at_least, positive
from infra.commands._common import print_result
from infra.context import add_contract_option, clients_for, resolve_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "warehouse",
        help="load the lake into the warehouse, query it",
        description="Load committed lake flushes into the warehouse (exactly once in effect), or"
        " run SQL against it.",
    )
    sub = p.add_subparsers(dest="warehouse_command", required=True, metavar="ACTION")
    load = sub.add_parser(
        "load",
        help="load new committed flushes",
        description="Load every committed flush manifest not yet in the load ledger, in batches"
        " (one transaction each), and print a JSON summary.",
    )
    load.add_argument("--follow", action="store_true", help="keep polling until interrupted")
    load.add_argument(
        "--batch", type=at_least(1), default=None, metavar="N", help="manifests per batch"
    )
    load.add_argument(
        "--interval",
        type=positive,
        default=2.0,
        metavar="S",
        help="seconds between polls (--follow)",
    )
    add_contract_option(load)
    load.set_defaults(func=run_load)
    query = sub.add_parser("query", help="run SQL against the warehouse")
    query.add_argument("sql", help="the SQL statement")
    query.add_argument("--json", action="store_true", help="print rows as JSON lines")
    add_contract_option(query)
    query.set_defaults(func=run_query)


def warehouse_settings(
    overrides: dict[str, Any] | None = None,
    args: argparse.Namespace | None = None,
    *,
    needs_aws: bool = True,
) -> Settings:
    """Settings with the local stack's warehouse DSN filled in when none is configured."""
    settings, local = resolve_settings(overrides, args=args, needs_aws=needs_aws)
    if settings.warehouse_dsn is None and local is not None:
        dsn = local.extra.get("warehouse_dsn")
        if dsn:
            settings = settings.replace(warehouse_dsn=str(dsn))
    if settings.warehouse_query_dsn is None and local is not None:
        reader = local.extra.get("warehouse_reader_dsn")
        if reader:
            settings = settings.replace(warehouse_query_dsn=str(reader))
    return settings


def run_load(args: argparse.Namespace) -> int:
    settings = warehouse_settings({"warehouse_batch_manifests": args.batch}, args)
    contract = contract_for_settings(settings, clients_for(settings))
    loader = build_loader(settings, contract, clients_for(settings))
    try:
        if not args.follow:
            summary = loader.run_once()
        else:
            stop = threading.Event()
            previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())

            def progress(s: LoadSummary) -> None:
                if s.manifests:
                    print(json.dumps(s.to_dict()), file=sys.stderr, flush=True)

            try:
                summary = loader.follow(args.interval, stop, on_round=progress)
            except KeyboardInterrupt:
                summary = loader.total
            finally:
                signal.signal(signal.SIGTERM, previous)
    finally:
        loader.warehouse.close()
    print(json.dumps(summary.to_dict(), sort_keys=True))
    return 0


def run_query(args: argparse.Namespace) -> int:
    """The SQL runs as the read-only role, in a read-only transaction that is rolled back."""
    settings = warehouse_settings(args=args, needs_aws=False)  # a PostgreSQL DSN is enough
    if settings.warehouse_query_dsn:
        settings = settings.replace(warehouse_dsn=settings.warehouse_query_dsn)
    contract = contract_for_settings(settings, clients_for(settings))
    warehouse = build_warehouse(settings, contract, clients_for(settings))
    try:
        result = warehouse.query(args.sql)
    finally:
        warehouse.close()
    print_result(result, args.json)
    return 0
