"""The quality alarm starts a retrain like the drift alarm, and the event's record names what
started the run (drift, quality, schedule; manual for runs started by hand)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from etl.aws import AwsClients
from etl.settings import load_settings
from retrain.events import example_event, parse_event
from retrain.gate import GateDeps, handle_event
from retrain.idempotency import EventStatus, MemoryStore
from retrain.results import RetrainOutcome
from retrain.triggers import Trigger, quality_alarm_name, trigger_of
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
