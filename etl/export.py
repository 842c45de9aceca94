"""The monitoring history into the lake: drift metrics, alarm transitions, model versions.

Two of the day-one queries need data that lives outside the lake: the drift metrics and the alarm
history in CloudWatch, the model versions in the SageMaker model registry. :class:`Exporter` copies
them into the lake bucket as three more Parquet tables, partitioned by day and registered in Glue
by the template (projected on ``event_date``, like the other tables):

==================== ======================================================== ==================
table                one row per                                              source
==================== ======================================================== ==================
``drift_metrics``    metric, feature and minute (``Average`` over 60 s)       GetMetricData over
                                                                              the stack's stream
``alarm_transitions`` state change of one of the stack's alarms               DescribeAlarmHistory
                                                                              (locally: the alarm
                                                                              evaluator's record)
``model_versions``   model version and metric (status, promotion, decision)   the model package
                                                                              group
==================== ======================================================== ==================

Objects are ``analytics/<table>/event_date=D/part-0.parquet``: one per day, **overwritten whole**
(keyed overwrite per partition), so a rerun never adds a row twice. A watermark per table
(``analytics/_watermarks/<table>.json``: the time exported through and a digest per day written)
makes it incremental: a run re-reads its sources from the start of the watermark's day (less
:data:`SETTLE`, for late datapoints) and writes only the days whose content changed. The
watermark is put after the objects: a crash in between makes the next run write the same bytes
again. Model versions change status after they are created, so that table is re-read whole each
run (a registry holds tens of versions) and, again, only changed days are written.

Scheduled on AWS (template: ``AnalyticsExportFunction``, hourly) and run locally by
``driftline lake export``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError

from etl.contract import PARTITION_DATE
from etl.exceptions import WarehouseError

log = logging.getLogger(__name__)

ANALYTICS_PREFIX = "analytics"
#: Datapoints and alarm changes can land a little late: each run re-reads this far before the
#: start of the watermark's day when that reaches into the previous day.
SETTLE = timedelta(hours=1)
#: What a first run reads (CloudWatch keeps one-minute datapoints for 15 days).
FIRST_LOOKBACK = timedelta(days=14)
METRIC_PERIOD_S = 60
_TS = pa.timestamp("us", tz="UTC")


class ExportTable(StrEnum):
    DRIFT_METRICS = "drift_metrics"
    ALARM_TRANSITIONS = "alarm_transitions"
    MODEL_VERSIONS = "model_versions"


#: Columns of each table (the partition ``event_date`` is in the key, not in the file); the
#: template's Glue tables list the same columns (a test compares them).
SCHEMAS: dict[ExportTable, pa.Schema] = {
    ExportTable.DRIFT_METRICS: pa.schema(
        [
            ("metric_time", _TS),
            ("namespace", pa.string()),
            ("metric", pa.string()),
            ("feature", pa.string()),
            ("value", pa.float64()),
            ("stream", pa.string()),
        ]
    ),
    ExportTable.ALARM_TRANSITIONS: pa.schema(
        [
            ("transition_time", _TS),
            ("alarm_name", pa.string()),
            ("namespace", pa.string()),
            ("metric", pa.string()),
            ("previous_state", pa.string()),
            ("state", pa.string()),
            ("reason", pa.string()),
        ]
    ),
    ExportTable.MODEL_VERSIONS: pa.schema(
        [
            ("created", _TS),
            ("model_group", pa.string()),
            ("version", pa.int64()),
            ("arn", pa.string()),
            ("status", pa.string()),
            ("promoted_at", _TS),
            ("decision", pa.string()),
            ("metric", pa.string()),
            ("value", pa.float64()),
            ("champion_value", pa.float64()),
        ]
    ),
}
#: The column each table is partitioned (and sorted) by.
TIME_COLUMN = {
    ExportTable.DRIFT_METRICS: "metric_time",
    ExportTable.ALARM_TRANSITIONS: "transition_time",
    ExportTable.MODEL_VERSIONS: "created",
}

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Transition:
    """One alarm state change, whichever source recorded it."""

    time: datetime
    alarm_name: str
    previous_state: str
    state: str
    reason: str


class AlarmHistory(Protocol):
    """Where alarm transitions come from: CloudWatch on AWS, the local evaluator's record."""

    def transitions(self, start: datetime, end: datetime) -> Iterable[Transition]: ...


@dataclass(frozen=True, slots=True)
class CloudWatchHistory:
    """``DescribeAlarmHistory`` (state updates) of the alarms named ``<prefix>...``."""

    cloudwatch: Any
    prefix: str

    def transitions(self, start: datetime, end: datetime) -> Iterator[Transition]:
        kwargs: dict[str, Any] = {
            "HistoryItemType": "StateUpdate",
            "StartDate": start,
            "EndDate": end,
            "ScanBy": "TimestampAscending",
        }
        for item in _pages(self.cloudwatch.describe_alarm_history, "AlarmHistoryItems", kwargs):
            if not str(item.get("AlarmName", "")).startswith(self.prefix):
                continue
            data = json.loads(item.get("HistoryData") or "{}")
            old, new = data.get("oldState", {}), data.get("newState", {})
            yield Transition(
                time=_utc(item["Timestamp"]),
                alarm_name=item["AlarmName"],
                previous_state=str(old.get("stateValue", "")),
                state=str(new.get("stateValue", "")),
                reason=str(new.get("stateReason", item.get("HistorySummary", ""))),
            )


@dataclass(frozen=True, slots=True)
class ExportSources:
    """Where the exporter reads; ``history`` None skips alarm transitions, ``model_group`` None
    skips model versions (a stack without either)."""

    cloudwatch: Any
    sagemaker: Any
    namespace: str
    stream: str
    alarm_prefix: str
    history: AlarmHistory | None = None
    model_group: str | None = None


@dataclass
class ExportReport:
    """Per table: the days written (unchanged days are not) and the rows in them."""

    written: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    through: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"written": self.written, "rows": self.rows, "through": self.through}


def object_key(table: ExportTable, day: str) -> str:
    return f"{ANALYTICS_PREFIX}/{table}/{PARTITION_DATE}={day}/part-0.parquet"


def watermark_key(table: ExportTable) -> str:
    return f"{ANALYTICS_PREFIX}/_watermarks/{table}.json"


class Exporter:
    """Copies the monitoring history of one stack into its lake bucket (module docstring)."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        sources: ExportSources,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.sources = sources
        self._clock = clock

    def run(self) -> ExportReport:
        """Export every table whose source the stack has; returns what was written."""
        now = self._clock().astimezone(UTC).replace(second=0, microsecond=0)
        report = ExportReport(through=now.isoformat())
        src = self.sources
        self._export(ExportTable.DRIFT_METRICS, now, report, self._metric_rows)
        if src.history is not None:
            self._export(ExportTable.ALARM_TRANSITIONS, now, report, self._transition_rows)
        if src.model_group is not None:
            self._export(ExportTable.MODEL_VERSIONS, now, report, self._version_rows)
        return report

    # -- one table ------------------------------------------------------------------------
    def _export(
        self,
        table: ExportTable,
        now: datetime,
        report: ExportReport,
        read: Callable[[datetime, datetime], list[Row]],
    ) -> None:
        mark = self._watermark(table)
        start = _start_of(mark, now)
        try:
            rows = read(start, now)
        except (ClientError, BotoCoreError) as exc:
            raise WarehouseError(
                f"reading the source of {table} failed ({exc}); nothing was written, the next"
                " run reads the same range again"
            ) from None
        by_day: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            by_day[row[TIME_COLUMN[table]].strftime("%Y-%m-%d")].append(row)
        digests = dict(mark.get("digests", {}))
        if table is not ExportTable.MODEL_VERSIONS:
            # Days before the re-read start are final: the watermark forgets their digests.
            digests = {d: h for d, h in digests.items() if d >= f"{start:%F}"}
        written: list[str] = []
        for day, day_rows in sorted(by_day.items()):
            body = _encode(table, day_rows)
            digest = hashlib.sha256(body).hexdigest()
            if digests.get(day) == digest:
                continue
            self._put(object_key(table, day), body, "application/vnd.apache.parquet")
            digests[day] = digest
            written.append(day)
        self._put(
            watermark_key(table),
            json.dumps({"through": now.isoformat(), "digests": digests}, sort_keys=True).encode(),
            "application/json",
        )
        report.written[str(table)] = written
        report.rows[str(table)] = sum(len(by_day[d]) for d in written)
        log.info("exported %s: %d day(s) written %s", table, len(written), written)

    def _watermark(self, table: ExportTable) -> dict[str, Any]:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=watermark_key(table))["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return {}
        except (ClientError, BotoCoreError) as exc:
            raise WarehouseError(f"reading the {table} export watermark failed: {exc}") from None
        doc = json.loads(body)
        return doc if isinstance(doc, dict) else {}

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise WarehouseError(f"writing s3://{self.bucket}/{key} failed: {exc}") from None

    # -- the sources ----------------------------------------------------------------------
    def _metric_rows(self, start: datetime, end: datetime) -> list[Row]:
        src = self.sources
        listed = list(
            _pages(
                src.cloudwatch.list_metrics,
                "Metrics",
                {
                    "Namespace": src.namespace,
                    "Dimensions": [{"Name": "Stream", "Value": src.stream}],
                },
            )
        )
        unique = {
            (m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))): m
            for m in listed
        }  # moto lists a metric once per datapoint
        queries = {f"m{i}": m for i, m in enumerate(unique.values())}
        rows: list[Row] = []
        ids = sorted(queries)
        for lo in range(0, len(ids), 500):  # GetMetricData takes 500 queries per call
            batch = [
                {
                    "Id": qid,
                    "MetricStat": {
                        "Metric": queries[qid],
                        "Period": METRIC_PERIOD_S,
                        "Stat": "Average",
                    },
                    "ReturnData": True,
                }
                for qid in ids[lo : lo + 500]
            ]
            # Through the current minute's period (partial: the next run rewrites the day).
            until = end + timedelta(seconds=METRIC_PERIOD_S)
            kwargs = {"MetricDataQueries": batch, "StartTime": start, "EndTime": until}
            for result in _pages(src.cloudwatch.get_metric_data, "MetricDataResults", kwargs):
                metric = queries[result["Id"]]
                dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                for t, v in zip(result["Timestamps"], result["Values"], strict=True):
                    rows.append(
                        {
                            "metric_time": _utc(t),
                            "namespace": src.namespace,
                            "metric": metric["MetricName"],
                            "feature": dims.get("Feature", ""),
                            "value": float(v),
                            "stream": src.stream,
                        }
                    )
        return rows

    def _transition_rows(self, start: datetime, end: datetime) -> list[Row]:
        src = self.sources
        watched = {
            a["AlarmName"]: (a.get("Namespace", ""), a.get("MetricName", ""))
            for a in _pages(
                src.cloudwatch.describe_alarms,
                "MetricAlarms",
                {"AlarmNamePrefix": src.alarm_prefix},
            )
        }
        assert src.history is not None
        return [
            {
                "transition_time": t.time,
                "alarm_name": t.alarm_name,
                "namespace": watched.get(t.alarm_name, ("", ""))[0],
                "metric": watched.get(t.alarm_name, ("", ""))[1],
                "previous_state": t.previous_state,
                "state": t.state,
                "reason": t.reason,
            }
            for t in src.history.transitions(start, end)
            if start <= t.time < end + timedelta(minutes=1)
        ]

    def _version_rows(self, start: datetime, end: datetime) -> list[Row]:
        group = self.sources.model_group
        sm = self.sources.sagemaker
        kwargs = {"ModelPackageGroupName": group, "SortBy": "CreationTime", "MaxResults": 100}
        try:
            arns = [
                s["ModelPackageArn"]
                for s in _pages(sm.list_model_packages, "ModelPackageSummaryList", kwargs)
            ]
        except ClientError as exc:
            raise WarehouseError(f"listing model group {group!r} failed: {exc}") from None
        rows: list[Row] = []
        for arn in arns:
            rows += version_rows(sm.describe_model_package(ModelPackageName=arn), str(group))
        return rows


def version_rows(desc: dict[str, Any], group: str) -> list[Row]:
    """A described model package as rows, one per metric (one with no metric if it has none).

    The properties are the registry's (``retrain/registry.py``): ``metric.<name>``,
    ``champion.<name>`` (the champion's value when it was judged), ``promoted_at`` (epoch s),
    ``decision``.
    """
    props = dict(desc.get("CustomerMetadataProperties") or {})
    metrics = {k.split(".", 1)[1]: float(v) for k, v in props.items() if k.startswith("metric.")}
    champion = {k.split(".", 1)[1]: float(v) for k, v in props.items() if k.startswith("champion.")}
    promoted = float(props.get("promoted_at", "0") or 0)
    base: Row = {
        "created": _utc(desc["CreationTime"]),
        "model_group": group,
        "version": int(desc.get("ModelPackageVersion", 0)),
        "arn": str(desc["ModelPackageArn"]),
        "status": str(desc.get("ModelApprovalStatus", "")),
        "promoted_at": datetime.fromtimestamp(promoted, UTC) if promoted > 0 else None,
        "decision": props.get("decision", ""),
    }
    if not metrics:
        return [{**base, "metric": None, "value": None, "champion_value": None}]
    return [
        {**base, "metric": name, "value": value, "champion_value": champion.get(name)}
        for name, value in sorted(metrics.items())
    ]


def _start_of(mark: dict[str, Any], now: datetime) -> datetime:
    """Where a run re-reads from: the watermark's day (less SETTLE), or FIRST_LOOKBACK ago."""
    through = mark.get("through")
    if not through:
        since = now - FIRST_LOOKBACK
    else:
        since = min(datetime.fromisoformat(through), now) - SETTLE
    return since.replace(hour=0, minute=0, second=0, microsecond=0)


def _encode(table: ExportTable, rows: list[Row]) -> bytes:
    column = TIME_COLUMN[table]
    ordered = sorted(rows, key=lambda r: (r[column], *(str(v) for v in r.values())))
    data = pa.Table.from_pylist(ordered, schema=SCHEMAS[table])
    sink = io.BytesIO()
    pq.write_table(data, sink, compression="zstd")
    return sink.getvalue()


def _utc(value: datetime | str) -> datetime:
    t = datetime.fromisoformat(value) if isinstance(value, str) else value
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _pages(call: Callable[..., Any], key: str, kwargs: dict[str, Any]) -> Iterator[Any]:
    """Every item under ``key`` across ``NextToken`` pages."""
    kwargs = dict(kwargs)
    while True:
        page = call(**kwargs)
        yield from page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return
        kwargs["NextToken"] = token


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Lambda entry point of the scheduled export (template: AnalyticsExportFunction)."""
    from etl.aws import AwsClients
    from etl.settings import load_settings

    settings = load_settings()
    clients = AwsClients.from_settings(settings)
    cloudwatch = clients.client("cloudwatch")
    sources = ExportSources(
        cloudwatch=cloudwatch,
        sagemaker=clients.client("sagemaker"),
        namespace=settings.metrics_namespace,
        stream=settings.require("stream_name"),
        alarm_prefix=f"{settings.stack_name}-",
        history=CloudWatchHistory(cloudwatch, f"{settings.stack_name}-"),
        model_group=settings.model_package_group,
    )
    report = Exporter(clients.client("s3"), settings.require("lake_bucket"), sources).run()
    log.info("export report %s", json.dumps(report.to_dict(), sort_keys=True))
    return report.to_dict()
