"""``driftline lake query "SQL"``: DuckDB over the lake (the local stand-in for Athena).

Tables are views named after the lake's tables (``card_transactions``, and
``card_transactions_dead_letters``). ``--file NAME`` runs one of the shared SQL files of
``etl/sql/`` (e.g. ``volume_per_partition``) instead of inline SQL.
"""

from __future__ import annotations

import argparse

from etl.contract import contract_for_settings
from etl.exceptions import ConfigError
from etl.query import LakeQuery, render, sql_file
from infra.commands.warehouse import print_result
from infra.context import add_contract_option, clients_for, resolve_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "lake",
        help="query the lake with DuckDB",
        description="Query the Parquet lake with DuckDB (read through pyarrow's S3 filesystem).",
    )
    sub = p.add_subparsers(dest="lake_command", required=True, metavar="ACTION")
    query = sub.add_parser("query", help="run SQL over the lake's tables")
    query.add_argument("sql", nargs="?", help="the SQL statement")
    query.add_argument("--file", metavar="NAME", help="run etl/sql/NAME.sql instead")
    query.add_argument("--json", action="store_true", help="print rows as JSON lines")
    add_contract_option(query)
    query.set_defaults(func=run_query)


def run_query(args: argparse.Namespace) -> int:
    if (args.sql is None) == (args.file is None):
        raise ConfigError("lake query", "give either SQL or --file NAME (one of them)")
    settings, _ = resolve_settings(args=args)
    contract = contract_for_settings(settings, clients_for(settings))
    sql = args.sql if args.file is None else render(sql_file(args.file), contract.name)
    lake = LakeQuery.from_settings(settings, clients_for(settings), contract)
    try:
        result = lake.query(sql)
    finally:
        lake.close()
    print_result(result, args.json)
    return 0
