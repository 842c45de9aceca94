"""Every alarm of the stack (``cloudwatch:DescribeAlarms``) and its transitions.

Transitions come from ``cloudwatch:DescribeAlarmHistory`` (StateUpdate items) on AWS. The emulator
keeps no alarm history (moto has no DescribeAlarmHistory), so against the local stack they come
from the local alarm evaluator's record, ``<state dir>/alarm-history.jsonl``, the same file
``driftline alarms`` prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from infra.console.context import Console, guard


@dataclass(frozen=True, slots=True)
class Transition:
    time: datetime
    alarm: str
    previous: str
    state: str
    reason: str


@dataclass
class Alarm:
    name: str
    state: str
    reason: str
    updated: datetime | None
    metric: str
    condition: str
    datapoints: str
    history: list[Transition]


def alarm_history(console: Console, name: str, limit: int = 50) -> list[Transition]:
    """Transitions of alarm ``name``, oldest first, at most ``limit`` (the newest)."""
    if console.emulated:
        from infra.alarm_evaluator import read_history

        local = [h for h in read_history(console.state_dir) if h.alarm_name == name]
        return [
            Transition(
                datetime.fromisoformat(h.time.replace("Z", "+00:00")),
                name,
                h.previous_state,
                h.state,
                h.reason,
            )
            for h in local[-limit:]
        ]
    cw = console.clients.client("cloudwatch")

    def fetch() -> list[dict[str, Any]]:
        resp = cw.describe_alarm_history(
            AlarmName=name, HistoryItemType="StateUpdate", MaxRecords=min(limit, 100)
        )
        items: list[dict[str, Any]] = resp.get("AlarmHistoryItems", [])
        return items

    items = guard("CloudWatch", f"cloudwatch:DescribeAlarmHistory {name}", fetch)
    out = [_from_item(i) for i in items]
    return sorted(out, key=lambda t: t.time)


def _from_item(item: dict[str, Any]) -> Transition:
    try:
        data = json.loads(item.get("HistoryData") or "{}")
    except json.JSONDecodeError:
        data = {}
    old = (data.get("oldState") or {}).get("stateValue", "")
    new = (data.get("newState") or {}).get("stateValue", "")
    reason = (data.get("newState") or {}).get("stateReason", item.get("HistorySummary", ""))
    return Transition(item["Timestamp"], item.get("AlarmName", ""), old, new, str(reason))


def alarms(console: Console, history: int = 20) -> list[Alarm]:
    prefix = console.settings.stack_name
    cw = console.clients.client("cloudwatch")

    def fetch() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in cw.get_paginator("describe_alarms").paginate(AlarmNamePrefix=prefix):
            out.extend(page.get("MetricAlarms", []))
        return out

    found = guard("CloudWatch", "cloudwatch:DescribeAlarms", fetch)
    result = []
    for a in found:
        n = a.get("DatapointsToAlarm") or a.get("EvaluationPeriods")
        result.append(
            Alarm(
                name=a["AlarmName"],
                state=str(a.get("StateValue", "")),
                reason=str(a.get("StateReason", "")),
                updated=a.get("StateUpdatedTimestamp"),
                metric=f"{a.get('Namespace', '')}/{a.get('MetricName', '')}",
                condition=f"{a.get('Statistic', '')} {_op(a.get('ComparisonOperator'))}"
                f" {a.get('Threshold')}",
                datapoints=f"{n} of {a.get('EvaluationPeriods')} × {a.get('Period')} s",
                history=alarm_history(console, a["AlarmName"], limit=history),
            )
        )
    return sorted(result, key=lambda x: x.name)


_OPS = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": "≥",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "≤",
}


def _op(op: Any) -> str:
    return _OPS.get(str(op), str(op))


def describe_drift_alarm(console: Console) -> tuple[str, dict[str, Any]] | None:
    """The stack's drift alarm (its name and ``DescribeAlarms`` entry), or None when it has none."""
    name = console.settings.drift_alarm_name or f"{console.settings.stack_name}-drift-score"
    cw = console.clients.client("cloudwatch")
    got = guard(
        "CloudWatch",
        "cloudwatch:DescribeAlarms",
        lambda: cw.describe_alarms(AlarmNames=[name]).get("MetricAlarms", []),
    )
    return (name, got[0]) if got else None
