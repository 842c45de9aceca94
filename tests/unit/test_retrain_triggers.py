"""The quality alarm starts a retrain like the drift alarm, and the event's record names what
started the run (drift, quality, schedule; manual for runs started by hand)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from etl.aws import AwsClients
from etl.contract import Contract, Task, load_contract, parse_contract
from etl.exceptions import ConfigError
from etl.settings import load_settings
from retrain import registry
from retrain.events import example_event, parse_event
from retrain.gate import GateDeps, handle_event
from retrain.idempotency import EventStatus, MemoryStore
from retrain.quality_alarm import arm, arm_at_promotion
from retrain.results import RetrainOutcome
from retrain.triggers import Trigger, quality_alarm_name, trigger_of
from retrain.wiring import RunDeps
from tests.unit.test_retrain_scheduled import scheduled


class RecordingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.results: dict[str, str] = {}

    def finish_event(self, event_id: str, run_id: str, status: EventStatus, result: str) -> None:
        self.results[event_id] = result
        super().finish_event(event_id, run_id, status, result)


def _outcome() -> RetrainOutcome:
    return RetrainOutcome(
        "promoted", "ok", "r", None, "roc_auc", None, {"roc_auc": 0.9}, 1, None, "s3://b/k",
        None, "v", "", "", 1, 1,
    )  # fmt: skip


def test_trigger_of_each_kind_of_event() -> None:
    assert trigger_of(parse_event(example_event("st-drift-score")), "st") is Trigger.DRIFT
    assert trigger_of(parse_event(example_event("st-quality-auc")), "st") is Trigger.QUALITY
    assert trigger_of(parse_event(scheduled()), "st") is Trigger.SCHEDULE
    assert trigger_of(None, "st") is Trigger.MANUAL
    assert quality_alarm_name("st") == "st-quality-auc"


@pytest.mark.parametrize("drift_alarm_name", [None, "st-drift-score"])
@pytest.mark.parametrize(
    ("raw", "status", "trigger"),
    [
        (example_event("st-quality-auc", event_id="q"), "ran", "quality"),
        (example_event("st-drift-score", event_id="d"), "ran", "drift"),
        (scheduled("s"), "ran", "schedule"),
        (example_event("other-quality-auc", event_id="x"), "ignored", None),
    ],
)
def test_the_quality_alarm_takes_the_drift_alarms_path_and_is_recorded(
    drift_alarm_name: str | None, raw: dict[str, Any], status: str, trigger: str | None
) -> None:
    # GIVEN a stack whose retrain rule matches its drift and quality alarms
    settings = load_settings(
        {"stack_name": "st", "drift_alarm_name": drift_alarm_name}, env={}, config_path=None
    )
    store, runs = RecordingStore(), []

    def run(settings: Any, clients: Any, *, event: Any, now: datetime) -> RetrainOutcome:
        runs.append(event)
        return _outcome()

    # WHEN the event reaches the gate
    result = handle_event(
        raw,
        settings,
        AwsClients(),
        gate=GateDeps(store=store, clock=lambda: 1000.0, run=run),
        now=datetime(2026, 3, 1, tzinfo=UTC),
    )
    # THEN the run starts (or not) and its record names its trigger
    assert result.status == status
    if trigger is not None:
        assert json.loads(store.results[result.event_id])["trigger"] == trigger
        assert len(runs) == 1
    else:
        assert runs == []


REGRESSION = parse_contract(
    {
        "name": "deliveries",
        "partition_key": "depot",
        "task": "regression",
        "fields": [
            {"name": "delivery_id", "type": "string", "role": "id"},
            {"name": "dispatched", "type": "timestamp", "role": "event_time"},
            {"name": "depot", "type": "string", "role": "attribute"},
            {"name": "km", "type": "float", "role": "feature"},
            {"name": "minutes_late", "type": "float", "role": "label"},
        ],
    }
)


@pytest.mark.parametrize(
    ("alarm", "status"), [("st-quality-rmse", "ran"), ("st-quality-auc", "ignored")]
)
def test_a_regression_contracts_rmse_alarm_starts_a_run_recorded_as_quality(
    alarm: str, status: str
) -> None:
    # GIVEN a stack of a regression contract (its quality alarm watches QualityRMSE)
    settings = load_settings({"stack_name": "st"}, env={}, config_path=None)
    store, runs = RecordingStore(), []

    def run(settings: Any, clients: Any, *, event: Any, now: datetime) -> RetrainOutcome:
        runs.append(event)
        return _outcome()

    # WHEN its quality alarm (or an AUC alarm it does not have) reaches the gate
    result = handle_event(
        example_event(alarm, event_id=alarm),
        settings,
        AwsClients(),
        deps=RunDeps(contract=REGRESSION),
        gate=GateDeps(store=store, clock=lambda: 1000.0, run=run),
        now=datetime(2026, 3, 1, tzinfo=UTC),
    )
    # THEN only the RMSE alarm runs, recorded as a quality run
    assert result.status == status and len(runs) == (status == "ran")
    if status == "ran":
        assert json.loads(store.results[alarm])["trigger"] == "quality"
    assert quality_alarm_name("st", Task.REGRESSION) == "st-quality-rmse"


class FakeAlarms:
    """describe_alarms / put_metric_alarm over one stored alarm (pure logic under test)."""

    def __init__(self, alarm: dict[str, Any]) -> None:
        self.alarm, self.puts = alarm, []

    def describe_alarms(self, AlarmNames: list[str]) -> dict[str, Any]:  # noqa: N803
        return {"MetricAlarms": [self.alarm] if self.alarm["AlarmName"] in AlarmNames else []}

    def put_metric_alarm(self, **request: Any) -> None:
        self.puts.append(request)


@pytest.mark.parametrize(
    ("contract", "alarm", "metric", "figures", "margin", "threshold"),
    [
        (None, "st-quality-auc", "QualityAUC", {"roc_auc": 0.93}, None, 0.88),
        (None, "st-quality-auc", "QualityAUC", {"roc_auc": 0.93}, 0.1, 0.83),
        (REGRESSION, "st-quality-rmse", "QualityRMSE", {"rmse": 4.0}, None, 5.0),
        (REGRESSION, "st-quality-rmse", "QualityRMSE", {"rmse": 4.0}, 0.5, 6.0),
    ],
)
def test_arming_sets_the_line_from_the_champions_holdout_and_keeps_the_rest(
    contract: Contract | None,
    alarm: str,
    metric: str,
    figures: dict[str, float],
    margin: float | None,
    threshold: float,
) -> None:
    # GIVEN the stack's quality alarm, unarmed, and a champion with its holdout figures
    cw = FakeAlarms(
        {"AlarmName": alarm, "MetricName": metric, "Namespace": "N", "Period": 60,
         "EvaluationPeriods": 3, "DatapointsToAlarm": 2, "Threshold": 0.0, "StateValue": "OK",
         "AlarmActions": ["arn:topic"], "AlarmDescription": ""}
    )  # fmt: skip
    settings = load_settings({"stack_name": "st"}, env={}, config_path=None)
    champ = registry.ModelVersion(7, "arn:v7", registry.Approval.APPROVED, "s3://m", figures)
    # WHEN armed (default margins: 0.05 below the AUC, 25 % above the RMSE)
    armed = arm(cw, settings, contract or load_contract(), champ, margin)
    # THEN the threshold is the champion's figure minus / plus the margin, the rest as deployed
    assert (armed.alarm, armed.champion_version, armed.threshold) == (alarm, 7, threshold)
    [put] = cw.puts
    assert put["Threshold"] == threshold and put["AlarmActions"] == ["arn:topic"]
    assert "StateValue" not in put and "AlarmDescription" not in put  # read-only / empty


def test_arming_without_the_figure_or_the_alarm_fails_naming_the_fix_and_a_promotion_goes_on() -> (
    None
):
    settings = load_settings({"stack_name": "st"}, env={}, config_path=None)
    cw = FakeAlarms({"AlarmName": "st-quality-auc", "MetricName": "QualityAUC"})
    nan = registry.ModelVersion(1, "a", registry.Approval.APPROVED, "s3://m", {"roc_auc": math.nan})
    with pytest.raises(ConfigError, match="no holdout roc_auc"):
        arm(cw, settings, load_contract(), nan)
    good = replace(nan, metrics={"roc_auc": 0.9})
    with pytest.raises(ConfigError, match="no alarm named 'st-quality-rmse'"):
        arm(cw, settings, REGRESSION, replace(good, metrics={"rmse": 1.0}))
    # a promotion is never failed by arming: the missing alarm is logged, None returned
    clients = type("C", (), {"client": lambda self, name: cw})()
    assert arm_at_promotion(settings, clients, REGRESSION, good) is None  # type: ignore[arg-type]
    assert cw.puts == []
