"""The two-step run: training job events (parsing, filtering), job names, the step-2 decision."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from etl.exceptions import EventError, RetrainError
from etl.settings import load_settings
from retrain.events import (
    AlarmEvent,
    MalformedEventError,
    TrainingJobEvent,
    example_event,
    example_training_event,
    parse_event,
    parse_training_event,
    should_finish,
)
from retrain.runs import (
    RunState,
    RunStatus,
    Step,
    decide_step,
    job_name,
    job_prefix,
    run_id_for_job,
)
from retrain.wiring import lock_ttl

JOB = "driftline-fraud-20260301T040000Z-0a1b2c3d"
SETTINGS = load_settings(env={}, config_path=None)


def _state(**changes: Any) -> RunState:
    state = RunState(
        run_id="fraud-20260301T040000Z-0a1b2c3d",
        job_name=JOB,
        status=RunStatus.TRAINING,
        event_id="ev-1",
        holder="handler-abc",
        window_start="2026-03-01T00:00:00+00:00",
        window_end="2026-03-01T04:00:00+00:00",
        holdout_start="2026-03-01T03:00:00+00:00",
        train_rows=900,
        holdout_rows=300,
        train_uri="s3://lake/retrain/fraud/r/train/",
        test_uri="s3://lake/retrain/fraud/r/test/",
        output_uri="s3://lake/models/fraud/r/",
        image_uri="img",
        hyperparameters={"model-id": "r"},
        started_at=1.0,
    )
    return replace(state, **changes)


def test_a_completed_training_job_event_parses_and_finishes_the_run() -> None:
    # GIVEN SageMaker's state-change event for one of this stack's jobs, as JSON text
    raw = example_training_event(
        JOB,
        "Completed",
        event_id="sm-1",
        model_data_url=f"s3://lake/models/fraud/r/{JOB}/output/model.tar.gz",
        time="2026-03-01T05:00:00Z",
    )
    # WHEN parsed (directly, and through the handler's dispatch)
    ev = parse_training_event(json.dumps(raw))
    # THEN every field is typed and it finishes the run
    assert (ev.event_id, ev.job_name, ev.status, ev.failure_reason) == (
        "sm-1",
        JOB,
        "Completed",
        "",
    )
    assert ev.model_data_url == f"s3://lake/models/fraud/r/{JOB}/output/model.tar.gz"
    assert ev.job_arn == f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB.lower()}"
    assert ev.timestamp == datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
    assert isinstance(parse_event(raw), TrainingJobEvent)
    assert isinstance(parse_event(example_event("driftline-drift-score")), AlarmEvent)
    decision = should_finish(ev, job_prefix="driftline-fraud-")
    assert decision.run and decision.reason == f"training job {JOB!r} ended Completed"


def test_training_events_of_other_jobs_or_not_ended_are_ignored_with_the_reason() -> None:
    other = parse_training_event(example_training_event("otherstack-fraud-20260301T040000Z-1"))
    assert should_finish(other, job_prefix="driftline-fraud-").reason == (
        "training job 'otherstack-fraud-20260301T040000Z-1' does not start with 'driftline-fraud-'"
    )
    running = parse_training_event(example_training_event(JOB, "InProgress"))
    assert should_finish(running, job_prefix="driftline-fraud-").reason == (
        f"training job {JOB!r} is InProgress, not ended"
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("id"), "training job event: missing 'id'"),
        (lambda d: d["detail"].pop("TrainingJobName"), "missing detail.'TrainingJobName'"),
        (
            lambda d: d["detail"].update(TrainingJobStatus="Exploded"),
            "detail.TrainingJobStatus 'Exploded' is not one of",
        ),
        (lambda d: d.update(detail=[]), "'detail' must be a Mapping"),
        (lambda d: d.update(time="yesterday"), "time 'yesterday' is not an ISO-8601 timestamp"),
        (lambda d: d.update(source="aws.batch"), "source/detail-type is 'aws.batch'"),
    ],
)
def test_a_malformed_training_event_is_rejected_and_kept(mutate: Any, message: str) -> None:
    raw = example_training_event(JOB)
    mutate(raw)
    with pytest.raises(MalformedEventError, match=re.escape(message)) as info:
        parse_training_event(raw)
    assert isinstance(info.value, EventError)
    assert info.value.raw is raw


def test_an_event_of_neither_kind_is_malformed_with_the_alarm_parsers_message() -> None:
    raw = {"id": "x", "source": "aws.s3", "detail-type": "Object Created", "detail": {}}
    with pytest.raises(
        MalformedEventError, match=re.escape("source/detail-type is 'aws.s3'")
    ) as info:
        parse_event(raw)
    assert info.value.raw is raw
    with pytest.raises(MalformedEventError, match="alarm event: not valid JSON"):
        parse_event("{nope")
    # a malformed SageMaker event gets the training parser's message
    bad = example_training_event(JOB)
    del bad["detail"]["TrainingJobStatus"]
    with pytest.raises(MalformedEventError, match=re.escape("training job event: missing detail.")):
        parse_event(bad)


def test_job_names_carry_the_stack_and_model_prefix_and_give_back_the_run_id() -> None:
    # GIVEN no model_name: the model is named after the contract (hyphens for underscores)
    assert job_prefix(SETTINGS.replace(model_name=None)) == "driftline-card-transactions-"
    # WHEN a model name is set THEN job names carry it and give back the run id
    named = SETTINGS.replace(model_name="fraud")
    name = job_name(named, "fraud-20260301T040000Z-0a1b2c3d")
    assert name == JOB
    assert name.startswith(job_prefix(named)) and job_prefix(named) == "driftline-fraud-"
    assert run_id_for_job(named, name) == "fraud-20260301T040000Z-0a1b2c3d"
    assert run_id_for_job(named, "driftline-other-20260301T040000Z-1") is None
    long = SETTINGS.replace(stack_name="s" * 40)
    with pytest.raises(RetrainError, match="is not a valid SageMaker name"):
        job_name(long, "fraud-20260301T040000Z-0a1b2c3d")


@pytest.mark.parametrize(
    ("status", "reason", "state", "step", "why"),
    [
        ("Completed", "", _state(), Step.FINISH, f"training job {JOB!r} completed"),
        (
            "Failed",
            "AlgorithmError: boom",
            _state(),
            Step.FAIL,
            f"training job {JOB!r} failed: AlgorithmError: boom",
        ),
        ("Stopped", "", _state(), Step.FAIL, f"training job {JOB!r} stopped"),
        (
            "Completed",
            "",
            None,
            Step.IGNORE,
            f"no run state for training job {JOB!r} (not started here)",
        ),
        (
            "Completed",
            "",
            _state(status=RunStatus.FINISHED),
            Step.IGNORE,
            "run 'fraud-20260301T040000Z-0a1b2c3d' is already finished; nothing to do",
        ),
        (
            "Failed",
            "",
            _state(status=RunStatus.FAILED),
            Step.IGNORE,
            "run 'fraud-20260301T040000Z-0a1b2c3d' is already failed; nothing to do",
        ),
        (
            "Completed",
            "",
            _state(job_name="driftline-fraud-other"),
            Step.IGNORE,
            f"run 'fraud-20260301T040000Z-0a1b2c3d' trains 'driftline-fraud-other', not {JOB!r}",
        ),
    ],
)
def test_the_step_two_decision(
    status: str, reason: str, state: RunState | None, step: Step, why: str
) -> None:
    # GIVEN a terminal event and the run's state WHEN decided THEN the step and its reason
    ev = parse_training_event(example_training_event(JOB, status, failure_reason=reason))
    decision = decide_step(ev, state)
    assert (decision.step, decision.reason) == (step, why)


def test_run_state_round_trips_through_json_and_rejects_a_partial_document() -> None:
    state = _state(champion_version=3, baseline_version="v1", extra={"read_s": 1.5})
    assert RunState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    with pytest.raises(RetrainError, match=r"run state lacks \['job_name', 'status'\]"):
        RunState.from_dict({"run_id": "r"})


def test_the_two_step_lock_outlasts_the_training_job() -> None:
    # the lock of a run that waits for the job's event covers the job's stopping condition
    assert lock_ttl(SETTINGS, wait=True) == 1800.0
    assert lock_ttl(SETTINGS, wait=False) == 1800.0 + 7200.0
    assert SETTINGS.sagemaker_training_max_runtime_s == 7200.0
