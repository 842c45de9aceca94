"""A GetMetricData for the emulator whose cost does not grow with (periods x every datapoint).

moto's ``CloudWatchBackend.get_metric_data`` walks every period of the asked range and, for each,
scans every datapoint of the range again, once per query: a 14-day range at a 60 s period
(20,160 periods) over a few thousand datapoints and a few dozen queries is billions of steps, so
one such call (the analytics export's first run, a console chart of 24 h) held an emulator
thread for many minutes while clients timed out, retried and piled more calls on it, and every
other request of the stack (the registry, the lake) waited behind them.

This version gives the same answer for the queries driftline makes (``MetricStat`` queries; any
call with a metric-math or Metrics Insights expression goes to moto's own code): it takes the
range's datapoints once, keeps those of each query's metric with moto's own matching rules
(name and namespace, or name and dimensions as moto compares them, then the unit), buckets them
by period, and computes each period's statistic with moto's ``Statistics``.

Also: ``PutMetricAlarm`` on an existing alarm keeps its state, as CloudWatch does ("when you update
an existing alarm, its StateValue is left unchanged"). moto builds a new alarm in state OK, so a
threshold changed while the alarm was in ALARM (the quality alarm re-armed at a promotion) made
the local evaluator see OK -> ALARM again and send a second, spurious alarm event.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

_INSTALLED = "_driftline_fast_get_metric_data"


def install() -> None:
    """Replace moto's ``CloudWatchBackend.get_metric_data`` in this process (idempotent)."""
    from moto.cloudwatch import models

    backend = models.CloudWatchBackend
    if getattr(backend, _INSTALLED, False):
        return
    original = backend.get_metric_data

    def get_metric_data(
        self: Any,
        queries: list[dict[str, Any]],
        start_time: datetime,
        end_time: datetime,
        scan_by: str = "TimestampAscending",
    ) -> list[dict[str, Any]]:
        if not queries or any("MetricStat" not in q for q in queries):
            return original(self, queries, start_time, end_time, scan_by)
        start = start_time.replace(microsecond=0)
        end = end_time.replace(microsecond=0)
        if start >= end:  # moto's own validation errors
            return original(self, queries, start_time, end_time, scan_by)
        by_name: dict[str, list[Any]] = defaultdict(list)
        for md in self.get_all_metrics():
            if start <= md.timestamp < end:
                by_name[md.name].append(md)
        return [
            _answer(models, q, by_name.get(_name(q), []), start, scan_by)
            for q in queries
            if q.get("ReturnData", True)
        ]

    backend.get_metric_data = get_metric_data  # type: ignore[method-assign]
    backend.put_metric_alarm = _keeping_state(backend.put_metric_alarm)  # type: ignore[method-assign]
    setattr(backend, _INSTALLED, True)


_STATE = ("state_value", "state_reason", "state_reason_data", "state_updated_timestamp", "history")


def _keeping_state(put_metric_alarm: Any) -> Any:
    """moto's ``put_metric_alarm`` with the state (value, reason, its data, time, history) of the
    alarm it replaces carried over: an update changes the configuration, never the state."""

    def put(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        before = self.alarms.get(name)
        alarm = put_metric_alarm(self, name, *args, **kwargs)
        if before is not None:
            for attr in _STATE:
                setattr(alarm, attr, getattr(before, attr))
        return alarm

    return put


def _name(query: dict[str, Any]) -> str:
    return str(query["MetricStat"]["Metric"]["MetricName"])


def _matching(models: Any, query: dict[str, Any], candidates: list[Any]) -> list[Any]:
    """moto's rules: with dimensions, the same (sorted) dimensions; without, the namespace."""
    stat = query["MetricStat"]
    metric = stat["Metric"]
    dims = [models.Dimension(d["Name"], d["Value"]) for d in metric.get("Dimensions", [])]
    if dims:
        wanted = sorted(dims)
        found = [md for md in candidates if sorted(md.dimensions) == wanted]
    else:
        found = [md for md in candidates if md.namespace == metric["Namespace"]]
    unit = stat.get("Unit")
    return [md for md in found if md.unit == unit] if unit else found


def _answer(
    models: Any, query: dict[str, Any], candidates: list[Any], start: datetime, scan_by: str
) -> dict[str, Any]:
    stat = query["MetricStat"]
    period = int(stat["Period"])
    buckets: dict[int, list[Any]] = defaultdict(list)
    for md in _matching(models, query, candidates):
        buckets[int((md.timestamp - start).total_seconds()) // period].append(md)
    values: list[Any] = []
    timestamps: list[datetime] = []
    for k in sorted(buckets):
        stats = models.Statistics([stat["Stat"]], start + timedelta(seconds=k * period))
        stats.metric_data = buckets[k]
        values.append(stats.get_statistics_for_type(stat["Stat"]))
        timestamps.append(stats.timestamp)
    if scan_by == "TimestampDescending":
        values.reverse()
        timestamps.reverse()
    label = query.get("Label") or f"{_name(query)} {stat['Stat']}"
    return {
        "id": query["Id"],
        "label": label,
        "values": values,
        "timestamps": timestamps,
        "status_code": "Complete",
    }
