"""The scheduled safety-net rule's event: parsed, gated like an alarm, run without an alarm."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from etl.aws import AwsClients
from etl.settings import load_settings
from retrain.events import MalformedEventError, ScheduledEvent, parse_event
from retrain.gate import GateDeps, handle_event
from retrain.idempotency import MemoryStore
from retrain.results import RetrainOutcome


def scheduled(event_id: str = "s-1", time: str = "2026-03-01T00:00:00Z") -> dict[str, Any]:
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time,
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/driftline-retrain-schedule"],
        "detail": {},
    }


def test_scheduled_event_is_parsed() -> None:
    e = parse_event(scheduled())
    assert isinstance(e, ScheduledEvent)
    assert (e.event_id, e.time) == ("s-1", datetime(2026, 3, 1, tzinfo=UTC))
    assert e.rules == ("arn:aws:events:us-east-1:123456789012:rule/driftline-retrain-schedule",)


def test_malformed_scheduled_event_is_rejected_and_kept() -> None:
    raw = scheduled()
    del raw["time"]
    with pytest.raises(MalformedEventError, match="scheduled event: missing 'time'") as err:
        parse_event(raw)
    assert err.value.raw == raw


def test_scheduled_event_runs_once_without_an_alarm_and_respects_the_cool_down() -> None:
    # GIVEN the gate with an in-memory store and a fake run that records its trigger
    settings = load_settings({"retrain_cooldown_s": 300}, env={}, config_path=None)
    store, triggers = MemoryStore(), []
    now = [1000.0]

    def run(settings: Any, clients: Any, *, event: Any, now: datetime) -> RetrainOutcome:
        triggers.append(event)
        return RetrainOutcome(
            "promoted",
            "ok",
            "r",
            None,
            "roc_auc",
            None,
            {"roc_auc": 0.9},
            1,
            None,
            "s3://b/k",
            None,
            "v",
            "",
            "",
            1,
            1,
        )

    def handle(event_id: str) -> str:
        return handle_event(
            scheduled(event_id),
            settings,
            AwsClients(),
            gate=GateDeps(store=store, clock=lambda: now[0], run=run),
            now=datetime(2026, 3, 1, tzinfo=UTC),
        ).status

    # WHEN the schedule fires, is redelivered, and fires again inside the cool-down
    assert handle("s-1") == "ran"
    assert handle("s-1") == "duplicate"
    now[0] += 60
    assert handle("s-2") != "ran"
    # THEN exactly one run started, with no alarm event as its trigger
    assert triggers == [None]
    # AND after the cool-down the next scheduled event runs
    now[0] += 600
    assert handle("s-3") == "ran" and triggers == [None, None]
