"""Typed parsing of the events the retrain handler receives from EventBridge.

* the CloudWatch alarm state change that starts a run (step 1), and
* the SageMaker training job state change that finishes it (step 2, AWS only):
  :func:`parse_training_event`, :func:`should_finish`; :func:`parse_event` tells the two apart.

The rule's target (a Lambda on AWS, an SQS queue read by the local dispatcher) receives the event in
CloudWatch's shape. :func:`parse_alarm_event` turns it into an :class:`AlarmEvent` or raises
:class:`~etl.exceptions.EventError` (the raw event kept on the exception, never lost);
:func:`should_retrain` says whether a well-formed event starts a run, with the reason when not.

>>> ev = parse_alarm_event(example_event("driftline-drift-score", "ALARM", event_id="e-1"))
>>> ev.alarm_name, ev.state, ev.previous_state
('driftline-drift-score', 'ALARM', 'OK')
>>> should_retrain(ev, alarm_names=("driftline-drift-score",)).run
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from etl.exceptions import EventError
from retrain.backends.base import JobStatus

DETAIL_TYPE = "CloudWatch Alarm State Change"
SOURCE = "aws.cloudwatch"
ALARM = "ALARM"
STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")

TRAINING_DETAIL_TYPE = "SageMaker Training Job State Change"
TRAINING_SOURCE = "aws.sagemaker"
TRAINING_STATUSES = tuple(str(s) for s in JobStatus)
#: Longest accepted event id (EventBridge ids are 36-character UUIDs) and alarm name (CloudWatch
#: allows 255); anything longer is malformed, not something to store and build names from.
MAX_ID_CHARS = 128
MAX_NAME_CHARS = 255


class MalformedEventError(EventError):
    """The event is not one the handler knows (or a malformed one); ``raw`` keeps it verbatim."""

    def __init__(self, message: str, raw: Any) -> None:
        self.raw = raw
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """The parts of a CloudWatch alarm state-change event a retrain needs."""

    event_id: str
    alarm_name: str
    alarm_arn: str
    state: str
    previous_state: str | None
    reason: str
    timestamp: datetime
    region: str
    account: str
    reason_data: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether an event starts a run; ``reason`` says why not (logged, returned to the caller)."""

    run: bool
    reason: str


def _require(
    obj: Mapping[str, Any],
    key: str,
    where: str,
    raw: Any,
    kind: type = str,
    what: str = "alarm event",
    max_chars: int = 1024,
) -> Any:
    if key not in obj:
        raise MalformedEventError(f"{what}: missing {where}{key!r}", raw)
    value = obj[key]
    if not isinstance(value, kind):
        raise MalformedEventError(
            f"{what}: {where}{key!r} must be a {kind.__name__}, got {_short(value)}", raw
        )
    if isinstance(value, str) and len(value) > max_chars:
        raise MalformedEventError(
            f"{what}: {where}{key!r} has {len(value)} characters; at most {max_chars} expected",
            raw,
        )
    return value


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _parse_time(text: str, where: str, raw: Any, what: str = "alarm event") -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedEventError(
            f"{what}: {where} {text!r} is not an ISO-8601 timestamp", raw
        ) from None
    if parsed.tzinfo is None:
        raise MalformedEventError(f"{what}: {where} {text!r} has no time zone", raw)
    return parsed


def _as_object(raw: Any, what: str) -> Mapping[str, Any]:
    doc: Any = raw
    if isinstance(raw, str | bytes):
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedEventError(f"{what}: not valid JSON ({exc})", raw) from None
        except RecursionError:
            raise MalformedEventError(f"{what}: the JSON is nested too deeply", raw) from None
    if not isinstance(doc, Mapping):
        raise MalformedEventError(f"{what}: expected a JSON object, got {type(doc).__name__}", raw)
    return doc


def parse_alarm_event(raw: Any) -> AlarmEvent:
    """Validate ``raw`` (a dict, or its JSON text) as a CloudWatch alarm state-change event.

    Raises :class:`MalformedEventError` naming the first missing or mistyped key.
    """
    doc = _as_object(raw, "alarm event")
    event_id = _require(doc, "id", "", raw, max_chars=MAX_ID_CHARS)
    if not event_id:
        raise MalformedEventError("alarm event: 'id' is empty", raw)
    source = _require(doc, "source", "", raw)
    detail_type = _require(doc, "detail-type", "", raw)
    if source != SOURCE or detail_type != DETAIL_TYPE:
        raise MalformedEventError(
            f"alarm event: source/detail-type is {source!r}/{detail_type!r}, expected"
            f" {SOURCE!r}/{DETAIL_TYPE!r}",
            raw,
        )
    detail = _require(doc, "detail", "", raw, Mapping)
    alarm_name = _require(detail, "alarmName", "detail.", raw, max_chars=MAX_NAME_CHARS)
    state = _require(detail, "state", "detail.", raw, Mapping)
    value = _require(state, "value", "detail.state.", raw)
    if value not in STATES:
        raise MalformedEventError(
            f"alarm event: detail.state.value {value!r} is not one of {STATES}", raw
        )
    timestamp_text = state.get("timestamp") or doc.get("time")
    if not isinstance(timestamp_text, str):
        raise MalformedEventError(
            "alarm event: neither detail.state.timestamp nor time is a timestamp string", raw
        )
    reason_data: Mapping[str, Any] = {}
    rd = state.get("reasonData")
    if isinstance(rd, str) and rd:
        try:
            parsed_rd = json.loads(rd)
        except (ValueError, RecursionError):
            raise MalformedEventError(
                "alarm event: detail.state.reasonData is not valid JSON", raw
            ) from None
        reason_data = parsed_rd if isinstance(parsed_rd, Mapping) else {"value": parsed_rd}
    previous = detail.get("previousState")
    previous_state = previous.get("value") if isinstance(previous, Mapping) else None
    resources = doc.get("resources")
    alarm_arn = resources[0] if isinstance(resources, list) and resources else ""
    return AlarmEvent(
        event_id=event_id,
        alarm_name=alarm_name,
        alarm_arn=str(alarm_arn),
        state=value,
        previous_state=previous_state if isinstance(previous_state, str) else None,
        reason=str(state.get("reason", "")),
        timestamp=_parse_time(timestamp_text, "detail.state.timestamp", raw),
        region=str(doc.get("region", "")),
        account=str(doc.get("account", "")),
        reason_data=reason_data,
        raw=doc,
    )


def should_retrain(
    event: AlarmEvent, *, alarm_names: Sequence[str] = (), alarm_prefix: str = ""
) -> Decision:
    """A run starts only for a transition *into* ALARM of one of ``alarm_names`` (when given)
    or of an alarm whose name starts with ``alarm_prefix``."""
    if alarm_names and event.alarm_name not in alarm_names:
        return Decision(
            False,
            f"alarm {event.alarm_name!r} is not a retrain alarm (expected {list(alarm_names)})",
        )
    if not alarm_names and not event.alarm_name.startswith(alarm_prefix):
        return Decision(
            False, f"alarm {event.alarm_name!r} does not start with this stack's {alarm_prefix!r}"
        )
    if event.state != ALARM:
        return Decision(False, f"alarm {event.alarm_name!r} moved to {event.state}, not ALARM")
    if event.previous_state == ALARM:
        return Decision(False, f"alarm {event.alarm_name!r} was already in ALARM (no transition)")
    return Decision(True, f"alarm {event.alarm_name!r} moved {event.previous_state} -> ALARM")


@dataclass(frozen=True, slots=True)
class TrainingJobEvent:
    """The parts of a SageMaker training job state-change event that finish a run."""

    event_id: str
    job_name: str
    job_arn: str
    status: JobStatus
    failure_reason: str
    #: ``detail.ModelArtifacts.S3ModelArtifacts`` when the event carries it.
    model_data_url: str
    timestamp: datetime
    region: str
    account: str
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def parse_training_event(raw: Any) -> TrainingJobEvent:
    """Validate ``raw`` as a "SageMaker Training Job State Change" event (``detail`` is the job's
    DescribeTrainingJob shape). Raises :class:`MalformedEventError` naming the first bad key."""
    what = "training job event"
    doc = _as_object(raw, what)
    event_id = _require(doc, "id", "", raw, what=what, max_chars=MAX_ID_CHARS)
    if not event_id:
        raise MalformedEventError(f"{what}: 'id' is empty", raw)
    source = _require(doc, "source", "", raw, what=what)
    detail_type = _require(doc, "detail-type", "", raw, what=what)
    if source != TRAINING_SOURCE or detail_type != TRAINING_DETAIL_TYPE:
        raise MalformedEventError(
            f"{what}: source/detail-type is {source!r}/{detail_type!r}, expected"
            f" {TRAINING_SOURCE!r}/{TRAINING_DETAIL_TYPE!r}",
            raw,
        )
    detail = _require(doc, "detail", "", raw, Mapping, what=what)
    job_name = _require(detail, "TrainingJobName", "detail.", raw, what=what, max_chars=63)
    if not job_name:
        raise MalformedEventError(f"{what}: detail.'TrainingJobName' is empty", raw)
    status = _require(detail, "TrainingJobStatus", "detail.", raw, what=what)
    if status not in TRAINING_STATUSES:
        raise MalformedEventError(
            f"{what}: detail.TrainingJobStatus {status!r} is not one of {TRAINING_STATUSES}", raw
        )
    time_text = _require(doc, "time", "", raw, what=what)
    artifacts = detail.get("ModelArtifacts")
    url = artifacts.get("S3ModelArtifacts", "") if isinstance(artifacts, Mapping) else ""
    return TrainingJobEvent(
        event_id=event_id,
        job_name=job_name,
        job_arn=str(detail.get("TrainingJobArn", "")),
        status=JobStatus(status),
        failure_reason=str(detail.get("FailureReason", "")),
        model_data_url=str(url),
        timestamp=_parse_time(time_text, "time", raw, what),
        region=str(doc.get("region", "")),
        account=str(doc.get("account", "")),
        raw=doc,
    )


SCHEDULE_SOURCE = "aws.events"
SCHEDULE_DETAIL_TYPE = "Scheduled Event"


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """The scheduled safety-net rule's event: retrain even if no alarm fired."""

    event_id: str
    time: datetime
    rules: tuple[str, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def parse_scheduled_event(raw: Any) -> ScheduledEvent:
    """Validate an EventBridge ``Scheduled Event``; names the first missing or mistyped key."""
    what = "scheduled event"
    doc = _as_object(raw, what)
    event_id = _require(doc, "id", "", raw, what=what, max_chars=MAX_ID_CHARS)
    if not event_id:
        raise MalformedEventError(f"{what}: 'id' is empty", raw)
    when = _parse_time(_require(doc, "time", "", raw, what=what), "'time'", raw, what=what)
    resources = doc.get("resources", [])
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise MalformedEventError(f"{what}: 'resources' must be a list of rule ARNs", raw)
    return ScheduledEvent(event_id=event_id, time=when, rules=tuple(resources), raw=doc)


def parse_event(raw: Any) -> AlarmEvent | TrainingJobEvent | ScheduledEvent:
    """Any event the handler receives, told apart by ``source``/``detail-type``: an alarm state
    change, a training job state change or the scheduled safety net; anything else is a
    :class:`MalformedEventError` (the alarm parser's message)."""
    try:
        doc = _as_object(raw, "alarm event")
    except MalformedEventError:
        return parse_alarm_event(raw)  # raises with the alarm parser's message, as before
    if doc.get("source") == TRAINING_SOURCE and doc.get("detail-type") == TRAINING_DETAIL_TYPE:
        return parse_training_event(raw)
    if doc.get("source") == SCHEDULE_SOURCE and doc.get("detail-type") == SCHEDULE_DETAIL_TYPE:
        return parse_scheduled_event(raw)
    return parse_alarm_event(raw)


def should_finish(event: TrainingJobEvent, *, job_prefix: str) -> Decision:
    """A training event finishes a run only for this stack and model's jobs (``job_prefix``) and
    only once the job has ended."""
    if not event.job_name.startswith(job_prefix):
        return Decision(
            False, f"training job {event.job_name!r} does not start with {job_prefix!r}"
        )
    if not event.status.terminal:
        return Decision(False, f"training job {event.job_name!r} is {event.status}, not ended")
    return Decision(True, f"training job {event.job_name!r} ended {event.status}")


def example_training_event(
    job_name: str,
    status: str = JobStatus.COMPLETED,
    *,
    event_id: str = "11111111-1111-1111-1111-111111111111",
    model_data_url: str = "",
    failure_reason: str = "",
    time: str = "2026-01-01T00:00:00Z",
    region: str = "us-east-1",
    account: str = "123456789012",
) -> dict[str, Any]:
    """An event in SageMaker's shape (``detail`` abridged to the keys the handler reads)."""
    arn = f"arn:aws:sagemaker:{region}:{account}:training-job/{job_name.lower()}"
    detail: dict[str, Any] = {
        "TrainingJobName": job_name,
        "TrainingJobArn": arn,
        "TrainingJobStatus": status,
        "SecondaryStatus": status,
        "ModelArtifacts": {"S3ModelArtifacts": model_data_url} if model_data_url else {},
    }
    if failure_reason:
        detail["FailureReason"] = failure_reason
    return {
        "version": "0",
        "id": event_id,
        "detail-type": TRAINING_DETAIL_TYPE,
        "source": TRAINING_SOURCE,
        "account": account,
        "time": time,
        "region": region,
        "resources": [arn],
        "detail": detail,
    }


def example_event(
    alarm_name: str,
    state: str = ALARM,
    *,
    event_id: str = "00000000-0000-0000-0000-000000000000",
    previous_state: str = "OK",
    time: str = "2026-01-01T00:00:00Z",
    region: str = "us-east-1",
    account: str = "123456789012",
) -> dict[str, Any]:
    """An event in exactly CloudWatch's shape (for tests, docs and `driftline retrain --now`)."""
    arn = f"arn:aws:cloudwatch:{region}:{account}:alarm:{alarm_name}"
    stamp = time.replace("Z", ".000+0000")
    return {
        "version": "0",
        "id": event_id,
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account,
        "time": time,
        "region": region,
        "resources": [arn],
        "detail": {
            "alarmName": alarm_name,
            "state": {
                "value": state,
                "reason": f"Threshold Crossed: example transition to {state}",
                "reasonData": json.dumps({"version": "1.0", "queryDate": stamp}),
                "timestamp": stamp,
            },
            "previousState": {"value": previous_state, "reason": "", "timestamp": stamp},
            "configuration": {"description": "", "metrics": []},
        },
    }
