"""At deploy: the stack's contract-specific analytics — views, named queries, QuickSight dataset.

The template holds what does not depend on the contract (the workgroup, the projected
``dead_letters`` and ``compactions`` tables, the QuickSight data source). ``driftline deploy`` then
publishes, for the stack's contract:

1. (before this, ``infra.lake_table.ensure_lake_table``: the lake table from the contract, with
   partition projection);
2. the Athena views ``<table>_dead_letters`` and ``<table>_compactions`` (the shared tables
   filtered to this table), ``<table>_current`` (the compaction visibility rule) and one view per
   shared query (``<table>_volume_per_partition`` ...) — run in the workgroup on AWS; moto runs no
   SQL, so locally DuckDB registers the same names at query time instead;
3. one Athena named query per shared query, in the workgroup (idempotent by name);
4. with a QuickSight data source (``QuickSightDataSourceArn`` output), a direct-query dataset over
   ``<table>_current`` whose columns come from the contract (AWS only).

And :func:`exporter_for`: the monitoring-history exporter (``etl.export``) wired for a stack, the
local one reading alarm transitions from the local alarm evaluator's record (moto has no
DescribeAlarmHistory).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from etl.analytics import (
    SHARED_QUERIES,
    Engine,
    athena_views,
    compactions_table,
    current_view,
    dead_letter_table,
    quote,
    render,
    sql_file,
)
from etl.aws import AwsClients, error_code
from etl.contract import (
    ARRIVAL_TIME,
    INGEST_TIME,
    PARTITION_DATE,
    PARTITION_HOUR,
    SEQUENCE_NUMBER,
    SHARD_ID,
    Contract,
    FieldType,
)
from etl.exceptions import StackError
from etl.export import CloudWatchHistory, Exporter, ExportSources, Transition
from etl.query import DEAD_LETTER_SCHEMA
from etl.settings import Settings

log = logging.getLogger(__name__)

_QS_TYPES = {
    FieldType.STRING: "STRING",
    FieldType.INT: "INTEGER",
    FieldType.FLOAT: "DECIMAL",
    FieldType.BOOL: "BOOLEAN",
    FieldType.TIMESTAMP: "DATETIME",
}
_DATASET_ACTIONS = [
    "quicksight:DescribeDataSet",
    "quicksight:DescribeDataSetPermissions",
    "quicksight:PassDataSet",
    "quicksight:DescribeIngestion",
    "quicksight:ListIngestions",
]


@dataclass
class Published:
    views: list[str] = field(default_factory=list)
    views_run: bool = False
    named_queries: list[str] = field(default_factory=list)
    dataset: str | None = None


def all_views(contract: Contract, bucket: str) -> dict[str, str]:
    """Every view of the contract's table, in creation order (a view's sources come first)."""
    t = contract.name
    dead_columns = ", ".join([*(f.name for f in DEAD_LETTER_SCHEMA), PARTITION_DATE])
    views = {
        dead_letter_table(t): f"CREATE OR REPLACE VIEW {quote(dead_letter_table(t))} AS\n"
        f"SELECT {dead_columns} FROM dead_letters WHERE table_name = '{t}'",
        compactions_table(t): f"CREATE OR REPLACE VIEW {quote(compactions_table(t))} AS\n"
        "SELECT state, generation, objects, supersedes, rows, written_at, event_date, event_hour"
        f" FROM compactions WHERE table_name = '{t}'",
    }
    views.update(athena_views(contract, bucket))
    return views


def named_query_name(contract: Contract, query: str) -> str:
    return f"{contract.name}: {query}"


def publish(
    clients: AwsClients,
    contract: Contract,
    outputs: dict[str, str],
    *,
    run_views: bool,
    quicksight_principal: str = "",
    sleep: Callable[[float], None] = time.sleep,
) -> Published:
    """Publish the contract's analytics into the deployed stack (see the module docstring)."""
    bucket, database = outputs["LakeBucket"], outputs["GlueDatabase"]
    workgroup = outputs["AthenaWorkgroup"]
    done = Published()
    athena = clients.client("athena")
    views = all_views(contract, bucket)
    done.views = list(views)
    if run_views:
        for sql in views.values():
            run_ddl(athena, sql, database=database, workgroup=workgroup, sleep=sleep)
        done.views_run = True
    done.named_queries = upsert_named_queries(athena, contract, database, workgroup)
    source_arn = outputs.get("QuickSightDataSourceArn")
    if source_arn and quicksight_principal:
        done.dataset = upsert_dataset(
            clients.client("quicksight"), contract, source_arn, database, quicksight_principal
        )
    return done


def run_ddl(
    athena: Any,
    sql: str,
    *,
    database: str,
    workgroup: str,
    timeout_s: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Run one statement in the workgroup and wait for it; a failure names the statement."""
    qid = athena.start_query_execution(
        QueryString=sql, QueryExecutionContext={"Database": database}, WorkGroup=workgroup
    )["QueryExecutionId"]
    waited = 0.0
    while True:
        status = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]
        if status["State"] == "SUCCEEDED":
            return str(qid)
        if status["State"] in ("FAILED", "CANCELLED"):
            raise StackError(
                f"Athena statement failed ({status.get('StateChangeReason', status['State'])}):"
                f" {sql.splitlines()[0]} ...; fix the view's SQL in etl/sql/ and deploy again"
            )
        if waited >= timeout_s:
            raise StackError(f"Athena statement {qid} still {status['State']} after {timeout_s}s")
        sleep(0.5)
        waited += 0.5


def upsert_named_queries(
    athena: Any, contract: Contract, database: str, workgroup: str
) -> list[str]:
    """One named query per shared query (rendered for Athena); replaced when its SQL changed."""
    existing: dict[str, dict[str, Any]] = {}
    ids = athena.list_named_queries(WorkGroup=workgroup).get("NamedQueryIds", [])
    for qid in ids:  # GetNamedQuery one by one: moto has no BatchGetNamedQuery
        q = athena.get_named_query(NamedQueryId=qid)["NamedQuery"]
        existing[q["Name"]] = q
    names = []
    for query in SHARED_QUERIES:
        name = named_query_name(contract, query)
        sql = render(sql_file(query), contract, Engine.ATHENA)
        old = existing.get(name)
        names.append(name)
        if old is not None and old.get("QueryString") == sql and old.get("Database") == database:
            continue
        if old is not None:
            athena.delete_named_query(NamedQueryId=old["NamedQueryId"])
        athena.create_named_query(
            Name=name,
            Description=f"driftline shared query {query} (etl/sql/{query}.sql)",
            Database=database,
            QueryString=sql,
            WorkGroup=workgroup,
        )
    return names


def dataset_request(
    contract: Contract, source_arn: str, database: str, principal: str, account: str
) -> dict[str, Any]:
    """CreateDataSet arguments: direct query over ``<table>_current``, columns from the contract."""
    columns = [{"Name": f.name, "Type": _QS_TYPES[f.type]} for f in contract.fields]
    columns += [
        {"Name": SHARD_ID, "Type": "STRING"},
        {"Name": SEQUENCE_NUMBER, "Type": "STRING"},
        {"Name": ARRIVAL_TIME, "Type": "DATETIME"},
        {"Name": INGEST_TIME, "Type": "DATETIME"},
        {"Name": PARTITION_DATE, "Type": "STRING"},
        {"Name": PARTITION_HOUR, "Type": "STRING"},
    ]
    dataset_id = f"{database}-{contract.name}".replace("_", "-")
    return {
        "AwsAccountId": account,
        "DataSetId": dataset_id,
        "Name": f"{contract.name} (lake, {database})",
        "ImportMode": "DIRECT_QUERY",
        "PhysicalTableMap": {
            "lake": {
                "RelationalTable": {
                    "DataSourceArn": source_arn,
                    "Catalog": "AwsDataCatalog",
                    "Schema": database,
                    "Name": current_view(contract.name),
                    "InputColumns": columns,
                }
            }
        },
        "Permissions": [{"Principal": principal, "Actions": _DATASET_ACTIONS}],
    }


def upsert_dataset(
    quicksight: Any, contract: Contract, source_arn: str, database: str, principal: str
) -> str:
    account = source_arn.split(":")[4]
    request = dataset_request(contract, source_arn, database, principal, account)
    try:
        quicksight.create_data_set(**request)
    except ClientError as exc:
        if error_code(exc) != "ResourceExistsException":
            raise
        request.pop("Permissions")
        quicksight.update_data_set(**request)
    return str(request["DataSetId"])


@dataclass(frozen=True, slots=True)
class EvaluatorHistory:
    """The local alarm evaluator's transitions (``<state dir>/alarm-history.jsonl``)."""

    state_dir: Path
    prefix: str

    def transitions(self, start: datetime, end: datetime) -> list[Transition]:
        from infra.alarm_evaluator import read_history

        out = []
        for t in read_history(self.state_dir):
            at = datetime.fromisoformat(t.time)
            if t.alarm_name.startswith(self.prefix) and start <= at <= end:
                out.append(Transition(at, t.alarm_name, t.previous_state, t.state, t.reason))
        return out


def exporter_for(settings: Settings, clients: AwsClients, state_dir: Path) -> Exporter:
    """The exporter of ``settings``' stack: CloudWatch's alarm history on AWS, the evaluator's
    record (in ``state_dir``) on the emulator."""
    from retrain.wiring import model_group

    prefix = f"{settings.stack_name}-"
    cloudwatch = clients.client("cloudwatch")
    history: Any = (
        EvaluatorHistory(state_dir, prefix)
        if settings.endpoint_url
        else CloudWatchHistory(cloudwatch, prefix)
    )
    sources = ExportSources(
        cloudwatch=cloudwatch,
        sagemaker=clients.client("sagemaker"),
        namespace=settings.metrics_namespace,
        stream=settings.require("stream_name"),
        alarm_prefix=prefix,
        history=history,
        model_group=model_group(settings),
    )
    return Exporter(clients.client("s3"), settings.require("lake_bucket"), sources)
