"""Alarm event parsing and the run/ignore decision."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from etl.exceptions import EventError
from retrain.events import MalformedEventError, example_event, parse_alarm_event, should_retrain

NAME = "driftline-drift-score"


def test_a_valid_alarm_transition_parses_and_runs() -> None:
    # GIVEN an event in CloudWatch's exact shape (OK -> ALARM)
    raw = example_event(NAME, "ALARM", event_id="ev-1", time="2026-03-01T04:00:00Z")
    # WHEN parsed
    ev = parse_alarm_event(json.dumps(raw))
    # THEN every field is typed, and it starts a run
    assert (ev.event_id, ev.alarm_name, ev.state, ev.previous_state) == (
        "ev-1",
        NAME,
        "ALARM",
        "OK",
    )
    assert ev.alarm_arn == f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{NAME}"
    assert ev.timestamp == datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
    assert ev.reason_data == {"version": "1.0", "queryDate": "2026-03-01T04:00:00.000+0000"}
    decision = should_retrain(ev, alarm_names=(NAME,))
    assert decision.run and decision.reason == f"alarm {NAME!r} moved OK -> ALARM"


def test_an_ok_transition_is_ignored_with_its_reason() -> None:
    ev = parse_alarm_event(example_event(NAME, "OK", previous_state="ALARM"))
    decision = should_retrain(ev, alarm_names=(NAME,))
    assert not decision.run
    assert decision.reason == f"alarm {NAME!r} moved to OK, not ALARM"


def test_another_alarm_is_ignored_with_its_reason() -> None:
    ev = parse_alarm_event(example_event("driftline-dead-letter-rate"))
    decision = should_retrain(ev, alarm_names=(NAME,))
    assert not decision.run
    assert decision.reason == (
        f"alarm 'driftline-dead-letter-rate' is not a retrain alarm (expected [{NAME!r}])"
    )
    other_stack = parse_alarm_event(example_event("otherstack-drift-score"))
    assert not should_retrain(other_stack, alarm_prefix="driftline-").run
    assert should_retrain(ev, alarm_prefix="driftline-").run


def test_alarm_to_alarm_is_not_a_transition() -> None:
    ev = parse_alarm_event(example_event(NAME, "ALARM", previous_state="ALARM"))
    assert should_retrain(ev, alarm_names=(NAME,)).reason == (
        f"alarm {NAME!r} was already in ALARM (no transition)"
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: "{not json", "alarm event: not valid JSON"),
        (lambda e: [e], "alarm event: expected a JSON object, got list"),
        (lambda e: {k: v for k, v in e.items() if k != "id"}, "alarm event: missing 'id'"),
        (lambda e: {**e, "source": "aws.s3"}, "alarm event: source/detail-type is 'aws.s3'"),
        (
            lambda e: {**e, "detail": {"state": {"value": "ALARM"}}},
            "alarm event: missing detail.'alarmName'",
        ),
        (
            lambda e: {
                **e,
                "detail": {**e["detail"], "state": {**e["detail"]["state"], "value": "ON_FIRE"}},
            },
            "alarm event: detail.state.value 'ON_FIRE' is not one of",
        ),
        (
            lambda e: {
                **e,
                "detail": {
                    **e["detail"],
                    "state": {**e["detail"]["state"], "timestamp": "yesterday"},
                },
            },
            "alarm event: detail.state.timestamp 'yesterday' is not an ISO-8601 timestamp",
        ),
    ],
)
def test_malformed_events_raise_and_keep_the_raw_event(mutate: object, message: str) -> None:
    # GIVEN a broken event
    raw = mutate(example_event(NAME))  # type: ignore[operator]
    # WHEN parsed THEN an EventError names the problem and keeps the raw event verbatim
    with pytest.raises(MalformedEventError) as info:
        parse_alarm_event(raw)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, EventError)
    assert info.value.raw == raw


def test_the_lambda_handler_ignores_an_ok_event_and_raises_on_a_malformed_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from retrain.handler import handler

    # GIVEN the Lambda's environment (no AWS call is needed to ignore an event)
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.setenv("DRIFTLINE_DRIFT_ALARM_NAME", NAME)
    # WHEN an OK transition arrives THEN the result says why nothing ran
    result = handler(example_event(NAME, "OK", event_id="ev-ok", previous_state="ALARM"), None)
    assert result == {
        "status": "ignored",
        "reason": f"alarm {NAME!r} moved to OK, not ALARM",
        "event_id": "ev-ok",
        "outcome": None,
    }
    # WHEN a malformed event arrives THEN it raises (Lambda keeps it for its on-failure target)
    with pytest.raises(MalformedEventError, match="alarm event: missing 'id'"):
        handler({"source": "aws.cloudwatch"}, None)
