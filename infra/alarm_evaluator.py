"""The local alarm evaluator: CloudWatch alarm evaluation and state-change events, locally.

moto stores metric alarms but never evaluates them, and never emits "CloudWatch Alarm State
Change" events. This process does both, from the alarms' own definitions in the emulator:

1. DescribeAlarms (optionally by name prefix);
2. GetMetricData over each alarm's evaluation range, in period-aligned buckets, with the alarm's
   statistic (plus SampleCount for reasonData);
3. :func:`infra.alarm_rules.evaluate` — CloudWatch's M-of-N and missing-data semantics;
4. on a change: PutEvents on the default bus with exactly CloudWatch's event shape, then
   SetAlarmState with the reason and reasonData (event first: a crash in between re-emits the
   event on the next round rather than losing it), and one JSON line in ``alarm-history.jsonl``.

Run as a process (``driftline local up`` starts it)::

    python -m infra.alarm_evaluator --endpoint http://127.0.0.1:PORT --state-dir .driftline \\
        --interval 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from etl.aws import AwsClients
from infra.alarm_rules import (
    AlarmDefinition,
    Evaluation,
    UnsupportedAlarmError,
    evaluate,
    evaluation_range,
)

log = logging.getLogger(__name__)

HISTORY_FILE = "alarm-history.jsonl"
EVENT_SOURCE = "aws.cloudwatch"
EVENT_DETAIL_TYPE = "CloudWatch Alarm State Change"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def cw_timestamp(t: dt.datetime) -> str:
    """CloudWatch's state timestamp format: ``2019-10-02T17:04:40.985+0000``."""
    t = t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+0000"


@dataclass(frozen=True, slots=True)
class Transition:
    """One alarm state change the evaluator made."""

    time: str
    alarm_name: str
    alarm_arn: str
    previous_state: str
    state: str
    reason: str
    reason_data: str
    event_id: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _metric_id(alarm: AlarmDefinition) -> str:
    # CloudWatch puts an opaque id per metric in the event; derive a stable one from the alarm.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, alarm.arn or alarm.name))


def state_change_event(
    alarm: AlarmDefinition,
    evaluation: Evaluation,
    *,
    previous: dict[str, Any],
    timestamp: dt.datetime,
) -> dict[str, Any]:
    """The event's ``detail`` as CloudWatch emits it for a single-metric alarm."""
    return {
        "alarmName": alarm.name,
        "state": {
            "value": evaluation.state,
            "reason": evaluation.reason,
            "reasonData": json.dumps(evaluation.reason_data, separators=(",", ":")),
            "timestamp": cw_timestamp(timestamp),
        },
        "previousState": previous,
        "configuration": {
            "description": alarm.description,
            "metrics": [
                {
                    "id": _metric_id(alarm),
                    "metricStat": {
                        "metric": {
                            "namespace": alarm.namespace,
                            "name": alarm.metric_name,
                            "dimensions": dict(alarm.dimensions),
                        },
                        "period": alarm.period,
                        "stat": alarm.statistic,
                    },
                    "returnData": True,
                }
            ],
        },
    }


def _previous_state(raw: dict[str, Any]) -> dict[str, Any]:
    ts = raw.get("StateUpdatedTimestamp")
    prev: dict[str, Any] = {
        "value": raw.get("StateValue") or "INSUFFICIENT_DATA",
        "reason": raw.get("StateReason") or "Unchecked: Initial alarm creation",
        "timestamp": cw_timestamp(ts) if isinstance(ts, dt.datetime) else "",
    }
    if raw.get("StateReasonData"):
        prev["reasonData"] = raw["StateReasonData"]
    return prev


class AlarmEvaluator:
    """Evaluates the emulator's metric alarms with CloudWatch's semantics (see module doc)."""

    def __init__(
        self,
        cloudwatch_client: Any,
        events_client: Any,
        *,
        clock: Callable[[], dt.datetime] = _utcnow,
        alarm_name_prefix: str | None = None,
        state_dir: Path | None = None,
        event_bus_name: str = "default",
    ) -> None:
        self._cw = cloudwatch_client
        self._events = events_client
        self._clock = clock
        self.alarm_name_prefix = alarm_name_prefix
        self.state_dir = state_dir
        self.event_bus_name = event_bus_name
        self._unsupported_logged: set[str] = set()
        self.rounds = 0
        self.errors = 0

    # -- one round -----------------------------------------------------------------------------
    def _alarms(self) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"AlarmTypes": ["MetricAlarm"]}
        if self.alarm_name_prefix:
            kwargs["AlarmNamePrefix"] = self.alarm_name_prefix
        while True:
            page = self._cw.describe_alarms(**kwargs)
            yield from page.get("MetricAlarms", [])
            token = page.get("NextToken")
            if not token:
                return
            kwargs["NextToken"] = token

    def datapoints(
        self, alarm: AlarmDefinition, now: dt.datetime
    ) -> tuple[dict[dt.datetime, float], dict[dt.datetime, float]]:
        """(value, sample count) per period start over the alarm's evaluation range."""
        starts = evaluation_range(alarm, now)
        metric = {
            "Namespace": alarm.namespace,
            "MetricName": alarm.metric_name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in alarm.dimensions],
        }
        queries = [
            {
                "Id": "v",
                "MetricStat": {"Metric": metric, "Period": alarm.period, "Stat": alarm.statistic},
                "ReturnData": True,
            },
            {
                "Id": "n",
                "MetricStat": {"Metric": metric, "Period": alarm.period, "Stat": "SampleCount"},
                "ReturnData": True,
            },
        ]
        resp = self._cw.get_metric_data(
            MetricDataQueries=queries,
            StartTime=starts[0],
            EndTime=starts[-1] + dt.timedelta(seconds=alarm.period),
            ScanBy="TimestampAscending",
        )
        out: dict[str, dict[dt.datetime, float]] = {"v": {}, "n": {}}
        for res in resp.get("MetricDataResults", []):
            series = out.get(res["Id"])
            if series is None:
                continue
            for t, v in zip(res.get("Timestamps", []), res.get("Values", []), strict=True):
                series[t.astimezone(dt.UTC)] = float(v)
        return out["v"], out["n"]

    def evaluate_once(self, now: dt.datetime | None = None) -> list[Transition]:
        """Evaluate every alarm once; returns the transitions made (and emitted)."""
        now = now or self._clock()
        self.rounds += 1
        transitions: list[Transition] = []
        for raw in self._alarms():
            name = str(raw.get("AlarmName"))
            try:
                alarm = AlarmDefinition.from_describe(raw)
            except UnsupportedAlarmError as exc:
                if name not in self._unsupported_logged:
                    log.warning("skipping alarm: %s", exc)
                    self._unsupported_logged.add(name)
                continue
            values, counts = self.datapoints(alarm, now)
            result = evaluate(
                alarm, values, now=now, current_state=alarm.state, sample_counts=counts
            )
            if not result.changed:
                continue
            transitions.append(self._transition(alarm, raw, result, now))
        return transitions

    def _transition(
        self, alarm: AlarmDefinition, raw: dict[str, Any], result: Evaluation, now: dt.datetime
    ) -> Transition:
        detail = state_change_event(alarm, result, previous=_previous_state(raw), timestamp=now)
        entry: dict[str, Any] = {
            "Source": EVENT_SOURCE,
            "DetailType": EVENT_DETAIL_TYPE,
            "Detail": json.dumps(detail),
            "Resources": [alarm.arn] if alarm.arn else [],
            "Time": now,
            "EventBusName": self.event_bus_name,
        }
        resp = self._events.put_events(Entries=[entry])
        first = (resp.get("Entries") or [{}])[0]
        if resp.get("FailedEntryCount") or first.get("ErrorCode"):
            raise RuntimeError(f"PutEvents failed for alarm {alarm.name!r}: {first}")
        reason_data = detail["state"]["reasonData"]
        self._cw.set_alarm_state(
            AlarmName=alarm.name,
            StateValue=result.state,
            StateReason=result.reason[:1023],
            StateReasonData=reason_data,
        )
        t = Transition(
            time=cw_timestamp(now),
            alarm_name=alarm.name,
            alarm_arn=alarm.arn,
            previous_state=alarm.state,
            state=result.state,
            reason=result.reason,
            reason_data=reason_data,
            event_id=first.get("EventId"),
        )
        log.info("alarm %s: %s -> %s (%s)", alarm.name, alarm.state, result.state, result.reason)
        self._record(t)
        return t

    def _record(self, t: Transition) -> None:
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / HISTORY_FILE, "a", encoding="utf-8") as fh:
            fh.write(t.to_json() + "\n")

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stop_event: threading.Event, interval_s: float = 10.0) -> None:
        """Evaluate every ``interval_s`` until ``stop_event`` is set; errors are logged."""
        while not stop_event.is_set():
            try:
                self.evaluate_once()
            except Exception as exc:  # keep evaluating: the emulator may be restarting
                self.errors += 1
                log.error("alarm evaluation round failed: %s: %s", type(exc).__name__, exc)
            stop_event.wait(interval_s)


def read_history(state_dir: Path, *, limit: int | None = None) -> list[Transition]:
    """The transitions recorded in ``state_dir/alarm-history.jsonl`` (oldest first)."""
    path = state_dir / HISTORY_FILE
    if not path.is_file():
        return []
    out: list[Transition] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            out.append(Transition(**json.loads(line)))
        except (json.JSONDecodeError, TypeError):
            log.warning("skipping unreadable alarm-history line: %.80s", line)
    return out[-limit:] if limit else out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate the emulator's CloudWatch alarms.")
    parser.add_argument("--endpoint", required=True, help="the emulator's URL")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between rounds")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--prefix", default=None, help="only alarms whose name starts with this")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    clients = AwsClients(region=args.region, endpoint_url=args.endpoint)
    evaluator = AlarmEvaluator(
        clients.client("cloudwatch"),
        clients.client("events"),
        alarm_name_prefix=args.prefix,
        state_dir=args.state_dir,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("alarm evaluator on %s every %.1fs", args.endpoint, args.interval)
    evaluator.run(stop, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
