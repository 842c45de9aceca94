"""``driftline lake query`` and ``driftline lake compact``.

``query "SQL" | --file NAME``: SQL over the lake's tables. ``--engine duckdb`` (the default with a
local stack) reads the Parquet through pyarrow into DuckDB; ``--engine athena`` (the default
against AWS) runs it in the stack's Athena workgroup through awswrangler and prints the bytes
scanned and what they cost. ``--file NAME`` runs a shared query of ``etl/sql/`` (e.g.
``volume_per_partition``), rendered for the contract and the engine: the same file on both.

``export``: copies the monitoring history (CloudWatch's drift metrics and alarm transitions, the
model registry's versions) into the lake as the tables ``drift_metrics``, ``alarm_transitions``
and ``model_versions`` (etl/export.py), which the shared queries ``drift_alarm_history`` and
``model_versions_over_time`` read.

``capture``: ingests the captured predictions (the model server's and the SageMaker endpoint's
data-capture objects under ``s3://<lake bucket>/capture/``) into the table
``<contract>_predictions`` (etl/capture_lake.py); ``--since AGE`` looks only at objects written
in the last AGE.

``compact``: rewrites the small objects of every lake hour that closed more than ``--older-than``
ago into objects of about ``--target-mb``, and deletes the superseded ones ``--grace`` after the
compaction committed (etl/compaction.py says why that is safe while consumers write and readers
read).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from datetime import timedelta

from etl.analytics import Engine, athena_query, render, sql_file
from etl.aws import AwsClients, wrangler_endpoint
from etl.compaction import CompactionOptions, Compactor, TableLocation
from etl.contract import contract_for_settings
from etl.exceptions import ConfigError, StackError
from etl.query import LakeQuery
from etl.settings import Settings
from etl.warehouse.base import QueryResult
from infra.commands._common import print_result
from infra.context import add_contract_option, clients_for, resolve_settings, state_dir

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d`` → timedelta (argparse type)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; use e.g. 90s, 15m, 2h, 1d")
    return timedelta(**{_UNITS[match[2]]: float(match[1])})


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "lake",
        help="query (DuckDB or Athena) and compact the lake",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="lake_command", required=True, metavar="ACTION")
    query = sub.add_parser("query", help="run SQL over the lake's tables")
    query.add_argument("sql", nargs="?", help="the SQL statement")
    query.add_argument("--file", metavar="NAME", help="run the shared query etl/sql/NAME.sql")
    query.add_argument(
        "--engine",
        choices=[e.value for e in Engine],
        default=None,
        help="duckdb (local stack default) or athena (AWS default)",
    )
    fmt = query.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print rows as JSON lines")
    fmt.add_argument("--csv", action="store_true", help="print rows as CSV with a header")
    add_contract_option(query)
    query.set_defaults(func=run_query)

    compact = sub.add_parser("compact", help="rewrite closed hours' small objects into few")
    compact.add_argument("--older-than", type=duration, default=timedelta(hours=2), metavar="AGE")
    compact.add_argument("--target-mb", type=float, default=128.0, metavar="MB")
    compact.add_argument(
        "--grace",
        type=duration,
        default=timedelta(minutes=15),
        metavar="AGE",
        help="delete superseded objects this long after the compaction committed (default 15m)",
    )
    compact.add_argument("--json", action="store_true", help="print the report as JSON")
    add_contract_option(compact)
    compact.set_defaults(func=run_compact)

    export = sub.add_parser(
        "export",
        help="copy drift metrics, alarm transitions and model versions into the lake",
        description="Incremental and idempotent: a watermark per table, days overwritten whole"
        " and only when changed (etl/export.py).",
    )
    export.add_argument("--json", action="store_true", help="print the report as JSON")
    export.set_defaults(func=run_export)

    capture = sub.add_parser(
        "capture",
        help="ingest captured predictions into the <contract>_predictions table",
        description="The model server's and the SageMaker endpoint's capture objects under"
        " s3://<lake bucket>/capture/ become rows of <contract>_predictions (Glue table,"
        " partitions, manifests); an object already ingested is skipped, a malformed line goes"
        " to the dead letters with its reason (etl/capture_lake.py). On AWS the stack's"
        " CaptureIngestFunction runs the same code on a schedule.",
    )
    capture.add_argument(
        "--since",
        type=duration,
        default=None,
        metavar="AGE",
        help="only capture objects written in the last AGE (e.g. 3h); default: all",
    )
    capture.add_argument("--json", action="store_true", help="print the report as JSON")
    add_contract_option(capture)
    capture.set_defaults(func=run_capture)


def _engine(args: argparse.Namespace, settings: Settings) -> Engine:
    if args.engine is not None:
        return Engine(args.engine)
    return Engine.DUCKDB if settings.endpoint_url else Engine.ATHENA


def run_query(args: argparse.Namespace) -> int:
    if (args.sql is None) == (args.file is None):
        raise ConfigError("lake query", "give either SQL or --file NAME (one of them)")
    settings, _ = resolve_settings(args=args)
    contract = contract_for_settings(settings, clients_for(settings))
    engine = _engine(args, settings)
    sql = args.sql if args.file is None else render(sql_file(args.file), contract, engine)
    if engine is Engine.ATHENA:
        result = _athena(sql, settings)
    else:
        lake = LakeQuery.from_settings(settings, clients_for(settings), contract)
        try:
            result = lake.query(sql)
        finally:
            lake.close()
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(["" if v is None else v for v in row] for row in result.rows)
    else:
        print_result(result, args.json)
    return 0


def _athena(sql: str, settings: Settings) -> QueryResult:
    clients = clients_for(settings)
    database, workgroup = settings.glue_database, settings.athena_workgroup
    if database is None or workgroup is None:
        outputs = _stack_outputs(clients, settings.stack_name)
        database = database or outputs.get("GlueDatabase")
        workgroup = workgroup or outputs.get("AthenaWorkgroup")
    if not database or not workgroup:
        raise ConfigError(
            "athena_workgroup",
            f"stack {settings.stack_name!r} has no AthenaWorkgroup/GlueDatabase outputs; deploy"
            " the current template or set DRIFTLINE_ATHENA_WORKGROUP and DRIFTLINE_GLUE_DATABASE",
        )
    with wrangler_endpoint(settings.endpoint_url):
        result = athena_query(sql, database=database, workgroup=workgroup, session=clients.session)
    # The cost goes to stderr so --json/--csv output stays machine-readable.
    print(
        f"athena: query {result.query_id} in workgroup {workgroup}: scanned"
        f" {result.bytes_scanned:,} bytes, cost ${result.cost_usd:.6f} (at $5/TB, 10 MB minimum)",
        file=sys.stderr,
    )
    return QueryResult(result.columns, result.rows)


def _stack_outputs(clients: AwsClients, stack_name: str) -> dict[str, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    from infra.stack import stack_outputs

    try:
        return stack_outputs(clients.client("cloudformation"), stack_name)
    except (ClientError, BotoCoreError, StackError):
        return {}


def run_compact(args: argparse.Namespace) -> int:
    if args.target_mb <= 0:
        raise ConfigError("--target-mb", f"got {args.target_mb}; give a size in MB > 0, e.g. 128")
    settings, _ = resolve_settings(args=args)
    clients = clients_for(settings)
    contract = contract_for_settings(settings, clients)
    compactor = Compactor(
        clients.client("s3"),
        contract,
        TableLocation.of(settings, contract),
        CompactionOptions(target_bytes=int(args.target_mb * 1024 * 1024), grace=args.grace),
    )
    report = compactor.run(args.older_than)
    if args.json:
        print(json.dumps(report.to_dict(), sort_keys=True))
    else:
        print(
            f"compacted {len(report.hours)} hour(s): {report.objects_in} objects"
            f" ({report.bytes_in:,} B) -> {report.objects_out} ({report.bytes_out:,} B),"
            f" {report.rows} rows; deleted {report.deleted} superseded object(s)"
        )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from infra.analytics import exporter_for

    settings, _ = resolve_settings(args=args)
    report = exporter_for(settings, clients_for(settings), state_dir()).run()
    if args.json:
        print(json.dumps(report.to_dict(), sort_keys=True))
        return 0
    for table, days in report.written.items():
        print(
            f"{table}: {report.rows[table]} row(s) in {len(days)} day(s) written"
            + (f" ({', '.join(days)})" if days else " (nothing new)")
        )
    return 0


def run_capture(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from etl.capture import CAPTURE_PREFIX
    from etl.capture_lake import ingester_for

    settings, _ = resolve_settings(args=args)
    clients = clients_for(settings)
    contract = contract_for_settings(settings, clients)
    since = None if args.since is None else datetime.now(UTC) - args.since
    ingester = ingester_for(settings, clients, contract)
    report = ingester.ingest(settings.require("lake_bucket"), CAPTURE_PREFIX, since=since)
    if args.json:
        print(json.dumps({"table": ingester.pcontract.name, **report.to_dict()}, sort_keys=True))
        return 0
    print(
        f"{ingester.pcontract.name}: {report.objects} capture object(s) ingested, {report.rows}"
        f" row(s); {report.skipped} already ingested; {report.dead_letters} malformed line(s) to"
        f" the dead letters; {report.without_id} prediction(s) without an id (CSV) left out"
    )
    return 0
