"""The overview's figures, one reader per fragment (each refreshes on its own).

| fragment | API |
| --- | --- |
| stream | kinesis:DescribeStreamSummary; cloudwatch:GetMetricData (AWS/Kinesis IncomingRecords,
  GetRecords.IteratorAgeMilliseconds; Driftline WindowRows) |
| consumers | dynamodb:Scan of the KCL lease table (the application name) |
| lake | glue:GetPartitions; s3:ListObjectsV2 + GetObject of the flush manifests |
| dead letters | s3:ListObjectsV2 + GetObject of the dead-letter files |
| warehouse | SQL on the warehouse (row count, load ledger) |
| alarm | cloudwatch:DescribeAlarms |
| serving | sagemaker:ListModelPackages (+ DescribeModelPackage); the model server's /model or
  sagemaker:DescribeEndpoint |
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.console.alarms_reader import describe_drift_alarm
from infra.console.context import BackendError, Console, guard, parallel
from infra.console.lake_reader import LakeSummary, dead_letters, lake_summary
from retrain import registry
from retrain.wiring import model_group


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class StreamView:
    name: str
    status: str
    open_shards: int
    incoming_per_s: float | None
    iterator_age_ms: float | None
    processed_per_s: float | None
    kinesis_metrics: bool


def stream(console: Console) -> StreamView:
    s = console.settings
    name = s.require("stream_name")
    kinesis, cw = console.clients.client("kinesis"), console.clients.client("cloudwatch")
    end = _now()
    queries = [
        _q("incoming", "AWS/Kinesis", "IncomingRecords", [("StreamName", name)], "Sum"),
        _q(
            "age",
            "AWS/Kinesis",
            "GetRecords.IteratorAgeMilliseconds",
            [("StreamName", name)],
            "Maximum",
        ),
        _q("rows", s.metrics_namespace, "WindowRows", [("Stream", name)], "Sum"),
    ]
    summary, resp = parallel(
        lambda: guard(
            "Kinesis",
            "kinesis:DescribeStreamSummary",
            lambda: kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"],
        ),
        lambda: guard(
            "CloudWatch",
            "cloudwatch:GetMetricData",
            lambda: cw.get_metric_data(
                MetricDataQueries=queries, StartTime=end - timedelta(minutes=10), EndTime=end
            ),
        ),
    )
    by_id = {r["Id"]: r.get("Values", []) for r in resp.get("MetricDataResults", [])}
    incoming = by_id.get("incoming") or []
    age = by_id.get("age") or []
    rows = by_id.get("rows") or []
    return StreamView(
        name=name,
        status=str(summary.get("StreamStatus", "")),
        open_shards=int(summary.get("OpenShardCount", 0)),
        incoming_per_s=incoming[0] / 60.0 if incoming else None,
        iterator_age_ms=age[0] if age else None,
        processed_per_s=sum(rows) / 600.0 if rows else None,
        kinesis_metrics=bool(incoming or age),
    )


def _q(qid: str, ns: str, metric: str, dims: list[tuple[str, str]], stat: str) -> dict[str, Any]:
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {
                "Namespace": ns,
                "MetricName": metric,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
            },
            "Period": 60,
            "Stat": stat,
        },
        "ReturnData": True,
    }


@dataclass(frozen=True, slots=True)
class Lease:
    shard: str
    owner: str
    checkpoint: str
    counter: int


def consumers(console: Console) -> list[Lease]:
    """The KCL lease table: which worker holds which shard, and its last checkpoint."""
    table = console.settings.require("application_name")
    ddb = console.clients.client("dynamodb")

    def scan() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in ddb.get_paginator("scan").paginate(TableName=table):
            items.extend(page.get("Items", []))
        return items

    try:
        items = guard("DynamoDB", f"dynamodb:Scan {table}", scan)
    except BackendError as exc:
        if "ResourceNotFoundException" in exc.message:
            return []  # no worker has started yet: the KCL creates its table
        raise
    out = [
        Lease(
            shard=_s(i, "leaseKey"),
            owner=_s(i, "leaseOwner") or "(unassigned)",
            checkpoint=_s(i, "checkpoint"),
            counter=int(i.get("leaseCounter", {}).get("N", "0")),
        )
        for i in items
    ]
    return sorted(out, key=lambda lease: lease.shard)


def _s(item: dict[str, Any], key: str) -> str:
    value = item.get(key, {})
    return str(value.get("S") or value.get("N") or "")


@dataclass
class LakeView:
    partitions: int
    objects: int
    bytes: int
    rows: int
    dead_letters: int
    manifests: int
    last_write: datetime | None


def lake(console: Console) -> LakeView:
    s = console.settings
    db, table = s.require("glue_database"), console.contract.name
    glue = console.clients.client("glue")

    def count() -> int:
        n = 0
        for page in glue.get_paginator("get_partitions").paginate(DatabaseName=db, TableName=table):
            n += len(page.get("Partitions", []))
        return n

    partitions, summary = parallel(
        lambda: guard("Glue", f"glue:GetPartitions {db}.{table}", count),
        lambda: lake_summary(console),
    )
    return LakeView(
        partitions,
        summary.objects,
        summary.bytes,
        summary.rows,
        summary.dead_letters,
        summary.manifests,
        summary.last_write,
    )


@dataclass
class DeadView:
    by_reason: list[tuple[str, int]]
    files_read: int
    files_total: int


def dead(console: Console) -> DeadView:
    got = dead_letters(console)
    return DeadView(got.by_reason, got.files_read, got.files_total)


@dataclass
class WarehouseView:
    backend: str
    rows: int
    loaded_manifests: int
    last_load: datetime | None
    #: Lake flushes not loaded yet (None: the lake could not be read; its card says why).
    pending_manifests: int | None
    configured: bool = True
    #: How far the warehouse is behind the lake: the lake's last write minus the last load.
    lag_s: float | None = None


def warehouse(console: Console) -> WarehouseView:
    """Rows and loads (SQL on the warehouse), and the load lag against the lake's manifests."""
    s = console.settings
    backend = "PostgreSQL" if s.warehouse_backend == "postgres" else "Redshift"
    if s.warehouse_backend == "postgres" and not s.warehouse_dsn:
        return WarehouseView(backend, 0, 0, None, None, configured=False)

    def lake_side() -> LakeSummary | None:
        try:
            return lake_summary(console)
        except BackendError:  # the lake card names the failing call
            return None

    (rows, loaded, last), lake_now = parallel(
        lambda: _warehouse_counts(console, backend), lake_side
    )
    view = WarehouseView(backend, rows, loaded, last, None)
    if lake_now is not None:
        view.pending_manifests = max(lake_now.manifests - loaded, 0)
        behind = view.pending_manifests > 0 and lake_now.last_write is not None
        if behind and last is not None and lake_now.last_write is not None:
            view.lag_s = max((lake_now.last_write - last).total_seconds(), 0.0)
        elif not behind:
            view.lag_s = 0.0
    return view


def _as_utc(value: Any) -> datetime | None:
    """A timestamp as the warehouse returns it (PostgreSQL: a datetime; the Redshift Data API:
    text), aware and in UTC."""
    if value is None or value == "":
        return None
    try:
        t = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _warehouse_counts(console: Console, backend: str) -> tuple[int, int, datetime | None]:
    """(rows, manifests loaded, last load) by two SELECTs; zeros before the first load."""
    from etl.warehouse.ddl import LEDGER_TABLE, Dialect, qualified
    from etl.warehouse.loader import build_warehouse

    s = console.settings
    dialect = Dialect.POSTGRES if s.warehouse_backend == "postgres" else Dialect.REDSHIFT
    target = qualified(s.warehouse_schema, console.contract.name, dialect)
    ledger = qualified(s.warehouse_schema, LEDGER_TABLE, dialect)

    def query() -> tuple[int, int, datetime | None]:
        wh = build_warehouse(s, console.contract, console.clients)
        try:
            rows = wh.query(f"SELECT count(*) FROM {target}").rows
            led = wh.query(f"SELECT count(*), max(loaded_at) FROM {ledger}").rows
        finally:
            wh.close()
        return int(rows[0][0]), int(led[0][0]), _as_utc(led[0][1])

    try:
        return guard(backend, "warehouse row count + load ledger", query)
    except BackendError as exc:
        if "does not exist" in exc.message:  # nothing loaded yet: the loader creates the tables
            return 0, 0, None
        raise


@dataclass
class AlarmView:
    name: str
    state: str
    reason: str
    updated: datetime | None
    threshold: float | None


def drift_alarm(console: Console) -> AlarmView | None:
    found = describe_drift_alarm(console)
    if found is None:
        return None
    name, a = found
    return AlarmView(
        name,
        str(a.get("StateValue", "")),
        str(a.get("StateReason", "")),
        a.get("StateUpdatedTimestamp"),
        a.get("Threshold"),
    )


@dataclass
class ServingView:
    version: int | None
    status: registry.Approval | None
    metrics: dict[str, float] = field(default_factory=dict)
    endpoint: str = ""
    endpoint_state: str = ""
    model_id: str | None = None
    endpoint_error: str | None = None


def serving(console: Console) -> ServingView:
    s = console.settings
    sm = console.clients.client("sagemaker")
    group = model_group(s)
    versions, endpoint = parallel(
        lambda: guard(
            "SageMaker", "sagemaker:ListModelPackages", lambda: registry.list_versions(sm, group)
        ),
        lambda: _endpoint(console),
    )
    champ = registry.champion(versions)
    view = ServingView(
        champ.version if champ else None,
        champ.status if champ else None,
        dict(champ.metrics) if champ else {},
    )
    view.endpoint, view.endpoint_state, view.model_id, view.endpoint_error = endpoint
    return view


def _endpoint(console: Console) -> tuple[str, str, str | None, str | None]:
    """(endpoint, state, model id, error) of what serves."""
    s = console.settings
    try:
        if s.serving_backend == "sagemaker":
            name = s.require("endpoint_name")
            sm = console.clients.client("sagemaker")
            desc = guard(
                "SageMaker",
                f"sagemaker:DescribeEndpoint {name}",
                lambda: sm.describe_endpoint(EndpointName=name),
            )
            return name, str(desc.get("EndpointStatus", "")), None, None
        if s.model_server_url:
            url = s.model_server_url
            doc = guard("model server", f"GET {url}/model", lambda: _get_json(f"{url}/model"))
            model_id = doc.get("model_id")
            return url, "serving" if model_id else "empty", model_id, None
        return "", "", None, "no model server is running (the demo starts one)"
    except BackendError as exc:
        return "", "", None, str(exc)


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=3) as resp:  # loopback model server
        doc = json.loads(resp.read())
    return doc if isinstance(doc, dict) else {}
