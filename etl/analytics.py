"""The shared SQL of ``etl/sql/``, rendered for a contract and an engine, and Athena's side of it.

One SQL dialect subset (what Athena's Trino and DuckDB both accept) with placeholders filled per
contract and, where the engines differ, per engine:

======================== ======================================== ==============================
placeholder              DuckDB (``driftline lake query``)        Athena
======================== ======================================== ==============================
``{table}``              the DuckDB view of the visible objects   the view ``<table>_current``
``{dead_letters}``       ``<table>_dead_letters``                 the same (a view, at deploy)
``{event_time_column}``  the contract's event-time column         the same
``{feature_summary}``    aggregates generated from the contract   the same
``{drift_metrics}``,     the exported tables (:mod:`etl.export`)  the same (Glue tables)
``{alarm_transitions}``,
``{model_versions}``
======================== ======================================== ==============================

No query names a contract's column: they use the lake's own columns (``shard_id``,
``ingest_time``, the partitions) and what the contract says (event time, features, label).

>>> from etl.contract import load_contract
>>> "FROM \\"card_transactions_current\\"" in render(sql_file("volume_per_partition"),
...     load_contract(), Engine.ATHENA)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any

from etl.contract import Contract, Field, FieldType
from etl.exceptions import WarehouseError
from etl.export import ExportTable

#: The day-one queries over the lake table and its dead letters.
LAKE_QUERIES = ("volume_per_partition", "dead_letter_reasons", "feature_summary_daily")
#: The day-one queries over the monitoring history ``driftline lake export`` writes (etl/export.py).
HISTORY_QUERIES = ("drift_alarm_history", "model_versions_over_time")
#: Every shared query: each runs on both engines for any contract.
SHARED_QUERIES = (*LAKE_QUERIES, *HISTORY_QUERIES)
#: Athena's price per TB scanned (us-east-1, 10 MB minimum per query).
PRICE_PER_TB_USD = 5.0
MIN_BILLED_BYTES = 10 * 1024 * 1024


class Engine(StrEnum):
    DUCKDB = "duckdb"
    ATHENA = "athena"


def quote(name: str) -> str:
    """A double-quoted identifier (both engines)."""
    return '"' + name.replace('"', '""') + '"'


def sql_file(name: str) -> str:
    """The text of ``etl/sql/<name>.sql``."""
    path = resources.files("etl.sql").joinpath(f"{name}.sql")
    if not path.is_file():
        available = sorted(
            p.name.removesuffix(".sql")
            for p in resources.files("etl.sql").iterdir()
            if p.name.endswith(".sql")
        )
        raise WarehouseError(f"no SQL file {name!r}; available: {available}")
    return path.read_text()


def current_view(table: str) -> str:
    return f"{table}_current"


def dead_letter_table(table: str) -> str:
    return f"{table}_dead_letters"


def compactions_table(table: str) -> str:
    return f"{table}_compactions"


def _summary(field: Field) -> list[str]:
    col, name = quote(field.name), field.name
    out = [f"avg(CASE WHEN {col} IS NULL THEN 1.0 ELSE 0.0 END) AS {quote(name + '_null_share')}"]
    if field.type in (FieldType.INT, FieldType.FLOAT):
        value = f"CAST({col} AS DOUBLE)"
        out += [
            f"avg({value}) AS {quote(name + '_mean')}",
            f"stddev_samp({value}) AS {quote(name + '_stddev')}",
            f"min({value}) AS {quote(name + '_min')}",
            f"max({value}) AS {quote(name + '_max')}",
        ]
    elif field.type is FieldType.BOOL:
        out.append(f"avg(CASE WHEN {col} THEN 1.0 ELSE 0.0 END) AS {quote(name + '_true_share')}")
    else:
        out.append(f"count(DISTINCT {col}) AS {quote(name + '_distinct')}")
    return out


def feature_summary(contract: Contract) -> str:
    """The per-feature aggregates of ``feature_summary_daily`` (features, then the label)."""
    fields = [*contract.features, *([contract.label] if contract.label else [])]
    return ",\n    ".join(expr for f in fields for expr in _summary(f))


def render(sql: str, contract: Contract, engine: Engine = Engine.DUCKDB) -> str:
    """Fill a shared SQL file's placeholders for ``contract`` on ``engine`` (comment lines,
    which describe the placeholders, are left out)."""
    sql = _strip_comments(sql)
    table = contract.name
    values = {
        "{table}": quote(current_view(table) if engine is Engine.ATHENA else table),
        "{dead_letters}": quote(dead_letter_table(table)),
        "{event_time_column}": quote(contract.event_time_field.name),
        **{f"{{{t}}}": quote(str(t)) for t in ExportTable},
    }
    if "{feature_summary}" in sql:
        values["{feature_summary}"] = feature_summary(contract)
    for key, value in values.items():
        sql = sql.replace(key, value)
    return sql


def athena_views(contract: Contract, bucket: str) -> dict[str, str]:
    """``CREATE OR REPLACE VIEW`` statements for Athena, by view name: the compaction-aware
    ``<table>_current`` first, then one view per shared query (named ``<table>_<query>``)."""
    table = contract.name
    current = (
        _strip_comments(sql_file("lake_current"))
        .replace("{view}", quote(current_view(table)))
        .replace("{raw_table}", quote(table))
        .replace("{compactions}", quote(compactions_table(table)))
        .replace("{bucket}", bucket)
    )
    views = {current_view(table): current}
    for name in SHARED_QUERIES:
        body = _strip_order_by(render(sql_file(name), contract, Engine.ATHENA))
        views[f"{table}_{name}"] = f"CREATE OR REPLACE VIEW {quote(f'{table}_{name}')} AS\n{body}"
    return views


def _strip_comments(sql: str) -> str:
    return "\n".join(ln for ln in sql.splitlines() if not ln.lstrip().startswith("--")).strip()


def _strip_order_by(sql: str) -> str:
    """A view's rows have no order; the trailing ORDER BY of a query file goes."""
    lines = sql.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and lines[-1].lstrip().upper().startswith("ORDER BY"):
        lines.pop()
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class AthenaResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    query_id: str
    bytes_scanned: int

    @property
    def cost_usd(self) -> float:
        billed = max(self.bytes_scanned, MIN_BILLED_BYTES)
        return billed / 1e12 * PRICE_PER_TB_USD


def athena_query(
    sql: str, *, database: str, workgroup: str, session: Any, params: list[str] | None = None
) -> AthenaResult:
    """Run ``sql`` on Athena in ``workgroup`` (its enforced result location and key) through
    awswrangler; returns the rows with the bytes scanned."""
    import awswrangler as wr

    try:
        frame = wr.athena.read_sql_query(
            sql,
            database=database,
            workgroup=workgroup,
            ctas_approach=False,
            params=params,
            paramstyle="qmark",
            boto3_session=session,
        )
    except (wr.exceptions.QueryFailed, wr.exceptions.QueryCancelled) as exc:
        raise WarehouseError(f"Athena query failed in workgroup {workgroup!r}: {exc}") from None
    meta = getattr(frame, "query_metadata", {}) or {}
    scanned = int(meta.get("Statistics", {}).get("DataScannedInBytes", 0))
    rows = [tuple(None if _isna(v) else v for v in r) for r in frame.itertuples(index=False)]
    return AthenaResult(
        [str(c) for c in frame.columns], rows, str(meta.get("QueryExecutionId", "")), scanned
    )


def _isna(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
