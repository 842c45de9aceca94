"""What started a retrain run: a drift alarm, the quality alarm, the schedule, or a person.

The retrain rule matches this stack's drift alarms (``<stack>-drift-*``) and its quality alarm
(``<stack>-quality-*``, docs/quality.md); both go down the same path (idempotent, single-flight,
cool-down) and the run's record says which one it was.

>>> from retrain.events import AlarmEvent
>>> trigger_of(None, "driftline").value
'manual'
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from etl.contract import Task
from retrain.events import AlarmEvent, ScheduledEvent


class Trigger(StrEnum):
    DRIFT = "drift"
    QUALITY = "quality"
    SCHEDULE = "schedule"
    MANUAL = "manual"


def quality_prefix(stack_name: str) -> str:
    """The name prefix of this stack's quality alarms (the retrain rule matches the same)."""
    return f"{stack_name}-quality-"


def quality_alarm_name(stack_name: str, task: Task | None = None) -> str:
    """The template's QualityAlarm: ``-quality-auc``, or ``-quality-rmse`` for a regression
    contract (the template's ``ContractTask``; retrain/quality_alarm.py)."""
    return f"{quality_prefix(stack_name)}{'rmse' if task is Task.REGRESSION else 'auc'}"


def trigger_of(event: Any, stack_name: str) -> Trigger:
    """The trigger of a run started by ``event`` (``None``: started by hand)."""
    if isinstance(event, ScheduledEvent):
        return Trigger.SCHEDULE
    if isinstance(event, AlarmEvent):
        if event.alarm_name.startswith(quality_prefix(stack_name)):
            return Trigger.QUALITY
        return Trigger.DRIFT
    return Trigger.MANUAL
