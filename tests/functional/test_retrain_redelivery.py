"""On AWS an ALARM deferred by the cool-down is delivered again by a one-time EventBridge
Scheduler schedule (moto's scheduler, CloudWatch and DynamoDB in the emulator): when the schedule's
input reaches the gate after the cool-down, the alarm retrains if it is still in ALARM."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from etl.aws import AwsClients
from etl.settings import Settings, load_settings
from retrain.events import example_event
from retrain.gate import GateDeps, handle_event
from retrain.redeliver import MARGIN_S, SchedulerRedelivery
from retrain.results import GateStatus, OutcomeStatus, RetrainOutcome

pytestmark = pytest.mark.functional
ALARM = "rd-drift-score"
GROUP = "rd-retrain"
TARGET = "arn:aws:lambda:us-east-1:123456789012:function:rd-retrain"
ROLE = "arn:aws:iam::123456789012:role/rd-retrain-redelivery"


def _settings(emulator: str) -> Settings:
    return load_settings(
        {
            "stack_name": "rd",
            "endpoint_url": emulator,
            "drift_alarm_name": ALARM,
            "retrain_cooldown_s": 300,
            "idempotency_table": "rd-retrain-idempotency",
        },
        env={},
        config_path=None,
    )


def _alarm(aws: AwsClients, state: str) -> None:
    cw = aws.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName=ALARM,
        MetricName="DriftScore",
        Namespace="Driftline",
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    cw.set_alarm_state(AlarmName=ALARM, StateValue=state, StateReason="test")


class _World:
    """The gate with a controllable clock, a recording run and the scheduler redelivery."""

    def __init__(self, aws: AwsClients, emulator: str) -> None:
        self.aws, self.settings, self.t, self.runs = aws, _settings(emulator), [1_000.0], []
        scheduler = aws.client("scheduler")
        scheduler.create_schedule_group(Name=GROUP)
        self.scheduler = scheduler
        redeliver = SchedulerRedelivery(scheduler, GROUP, TARGET, ROLE)
        self.gate = GateDeps(clock=lambda: self.t[0], run=self._run, redeliver=redeliver)

    def _run(self, settings: Any, clients: Any, *, event: Any, now: datetime) -> RetrainOutcome:
        self.runs.append(event.event_id)
        return RetrainOutcome(
            OutcomeStatus.PROMOTED, "ok", "r", event.event_id, "roc_auc", None, {}, 1, None,
            "s3://lake/m", None, "v", "", "", 1, 1,
        )  # fmt: skip

    def deliver(self, raw: Any) -> Any:
        return handle_event(raw, self.settings, self.aws, gate=self.gate)

    def only_schedule(self) -> dict[str, Any]:
        (found,) = self.scheduler.list_schedules(GroupName=GROUP)["Schedules"]
        return dict(self.scheduler.get_schedule(GroupName=GROUP, Name=found["Name"]))


def _defer_one(world: _World) -> dict[str, Any]:
    # a run, then a second ALARM event 60 s into the 300 s cool-down
    assert world.deliver(example_event(ALARM, event_id="ev-1")).status is GateStatus.RAN
    world.t[0] += 60
    deferred = world.deliver(example_event(ALARM, event_id="ev-2"))
    assert deferred.status is GateStatus.DEFERRED, deferred.reason
    assert deferred.retry_after_s == pytest.approx(240.0)
    return world.only_schedule()


def test_an_alarm_still_in_alarm_after_the_cool_down_retrains(
    aws: AwsClients, emulator: str
) -> None:
    # GIVEN the drift alarm in ALARM and the gate as the Lambda runs it (scheduler redelivery)
    _alarm(aws, "ALARM")
    world = _World(aws, emulator)
    # WHEN an ALARM event meets the cool-down
    schedule = _defer_one(world)
    # THEN a one-time schedule delivers the same event to the retrain function when the
    # cool-down ends, and deletes itself afterwards
    end = datetime.fromtimestamp(1_000 + 300 + MARGIN_S, UTC)
    assert schedule["ScheduleExpression"] == f"at({end.strftime('%Y-%m-%dT%H:%M:%S')})"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = schedule["Target"]
    assert (target["Arn"], target["RoleArn"]) == (TARGET, ROLE)
    assert json.loads(target["Input"]) == example_event(ALARM, event_id="ev-2")
    # WHEN the schedule fires after the cool-down (the alarm still in ALARM)
    world.t[0] = 1_000 + 300 + MARGIN_S
    again = world.deliver(target["Input"])
    # THEN the deferred event retrains, once
    assert again.status is GateStatus.RAN and world.runs == ["ev-1", "ev-2"]
    assert world.deliver(target["Input"]).status is GateStatus.DUPLICATE
    assert world.runs == ["ev-1", "ev-2"]


def test_an_alarm_back_to_ok_by_the_end_of_the_cool_down_does_not_retrain(
    aws: AwsClients, emulator: str
) -> None:
    # GIVEN an ALARM deferred by the cool-down
    _alarm(aws, "ALARM")
    world = _World(aws, emulator)
    target = _defer_one(world)["Target"]
    # WHEN the alarm returns to OK before the schedule fires
    aws.client("cloudwatch").set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="t")
    world.t[0] = 1_000 + 300 + MARGIN_S
    result = world.deliver(target["Input"])
    # THEN nothing runs, and the result says why
    assert result.status is GateStatus.IGNORED
    assert result.reason == f"alarm {ALARM!r} left ALARM during the cool-down"
    assert world.runs == ["ev-1"]


def test_a_retried_deferral_creates_the_schedule_once(aws: AwsClients, emulator: str) -> None:
    # GIVEN the redelivery  WHEN the same event is scheduled twice for the same time (a Lambda
    # retry)  THEN one schedule exists and both calls name it
    scheduler = aws.client("scheduler")
    scheduler.create_schedule_group(Name="rd2")
    redeliver = SchedulerRedelivery(scheduler, "rd2", TARGET, ROLE)
    at = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
    event = example_event(ALARM, event_id="ev-9")
    assert redeliver(event, at) == redeliver(event, at)
    assert len(scheduler.list_schedules(GroupName="rd2")["Schedules"]) == 1
