"""Deliver a deferred alarm event again when the retrain cool-down ends (AWS).

CloudWatch sends no new event while an alarm stays in ALARM, so an ALARM that arrives during the
cool-down would otherwise wait for the daily safety net. Locally the dispatcher keeps the message
and delivers it again after ``retry_after_s``. On AWS the Lambda creates a one-time EventBridge
Scheduler schedule, ``at(<end of the cool-down>)``, in the stack's schedule group, whose target is
the retrain function with the original event as its input; the schedule deletes itself after it
ran (``ActionAfterCompletion: DELETE``). The event keeps its id, so the gate finds it ``DEFERRED``,
checks that the alarm is still in ALARM, and runs (or ignores it when the alarm went back to OK).

A schedule's name is derived from (event id, time), so a retried Lambda invocation creates the
same schedule once (``ConflictException`` means it exists).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from etl.aws import AwsClients, error_code
from etl.exceptions import RetrainError
from etl.settings import Settings

log = logging.getLogger(__name__)

#: EventBridge Scheduler's limit on a target's input.
MAX_INPUT_CHARS = 8192
#: Delivered this long after the cool-down ends, so the lock has surely expired.
MARGIN_S = 5.0


class Redeliver(Protocol):
    def __call__(self, event: Mapping[str, Any], at: datetime) -> str:
        """Arrange for ``event`` to reach the handler again at ``at``; returns where."""
        ...


def schedule_name(event_id: str, at: datetime) -> str:
    """``rd-<16 hex of the event id>-<epoch seconds>`` (at most 64 characters)."""
    digest = hashlib.sha256(event_id.encode()).hexdigest()[:16]
    return f"rd-{digest}-{int(at.timestamp())}"


@dataclass(frozen=True)
class SchedulerRedelivery:
    """One-time EventBridge Scheduler schedules that invoke ``target_arn`` with the event."""

    scheduler: Any
    group: str
    target_arn: str
    role_arn: str

    @classmethod
    def from_settings(cls, settings: Settings, clients: AwsClients) -> SchedulerRedelivery | None:
        """The stack's redelivery, or None when the settings name none (local mode)."""
        if not (settings.redelivery_target_arn and settings.redelivery_role_arn):
            return None
        return cls(
            clients.client("scheduler"),
            settings.redelivery_group or f"{settings.stack_name}-retrain",
            settings.redelivery_target_arn,
            settings.redelivery_role_arn,
        )

    def __call__(self, event: Mapping[str, Any], at: datetime) -> str:
        body = json.dumps(dict(event), separators=(",", ":"), sort_keys=True)
        if len(body) > MAX_INPUT_CHARS:
            raise RetrainError(
                f"event {event.get('id')!r} is {len(body)} characters, over the scheduler's"
                f" {MAX_INPUT_CHARS}; the daily safety-net run covers it"
            )
        when = (at.astimezone(UTC) + timedelta(seconds=MARGIN_S)).replace(microsecond=0)
        name = schedule_name(str(event.get("id", "")), when)
        try:
            self.scheduler.create_schedule(
                Name=name,
                GroupName=self.group,
                ScheduleExpression=f"at({when.strftime('%Y-%m-%dT%H:%M:%S')})",
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Description="driftline: an alarm deferred by the retrain cool-down",
                Target={"Arn": self.target_arn, "RoleArn": self.role_arn, "Input": body},
            )
        except Exception as exc:
            if error_code(exc) != "ConflictException":
                raise
        log.info("event %s delivered again at %s (schedule %s)", event.get("id"), when, name)
        return f"{self.group}/{name}"
