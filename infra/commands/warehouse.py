"""``driftline warehouse load [--follow]`` and ``driftline warehouse query "SQL"``.

The warehouse is the one ``warehouse_backend`` names: the embedded PostgreSQL of the local stack
(its DSN comes from the stack's state, or ``DRIFTLINE_WAREHOUSE_DSN``), or Redshift through the Data
API (``DRIFTLINE_WAREHOUSE_BACKEND=redshift-data`` plus workgroup, database and secret).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import threading
from decimal import Decimal
from typing import Any

from etl.contract import contract_for_settings
from etl.settings import Settings
from etl.warehouse import LoadSummary, QueryResult, build_loader, build_warehouse
from infra.argtypes import at_least, positive
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def print_result(result: QueryResult, as_json: bool) -> None:
    """Rows as JSON lines, or as an aligned text table with a row count."""
    if as_json:
        for row in result.rows:
            doc = {c: _jsonable(v) for c, v in zip(result.columns, row, strict=True)}
            print(json.dumps(doc, sort_keys=False, default=str))
        return
    if not result.columns:
        print("(no result set)")
        return
    cells = [["" if v is None else str(_jsonable(v)) for v in row] for row in result.rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(result.columns)]
    print("  ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    print(f"({len(cells)} row{'s' if len(cells) != 1 else ''})")


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
