"""CloudWatch metric-alarm semantics as pure code (moto stores alarms but never evaluates them).

Follows the CloudWatch user guide, "Alarm evaluation" and "Configuring how CloudWatch alarms treat
missing data":

* The metric is aggregated per **period**, in buckets aligned to multiples of the period (UTC
  epoch); only complete periods are evaluated.
* **M of N**: the alarm goes to ALARM when at least ``DatapointsToAlarm`` (M) of the last
  ``EvaluationPeriods`` (N) datapoints breach, and to OK otherwise.
* CloudWatch retrieves an **evaluation range** longer than N (the guide's example: N=3 → the 5
  most recent periods; here ``N + 2``, see :data:`EXTRA_RANGE_PERIODS`). With at least N real
  datapoints in the range, the N most recent real ones are evaluated and missing-data treatment
  does not apply. With fewer, every real datapoint in the range is used and the rest are filled as
  ``TreatMissingData`` says, as few times as possible:

  - ``breaching`` / ``notBreaching``: fills count as breaching / not breaching;
  - ``ignore``: the state changes only when the real datapoints decide it whatever the fills
    would be, otherwise the current state is kept (all missing: kept);
  - ``missing`` (the default): the real datapoints decide (ALARM when all of them, up to M,
    breach); all missing → INSUFFICIENT_DATA.

  This reproduces the guide's table for a 3-of-3 alarm (see ``tests/unit/test_alarm_rules.py``).
* Operators: ``GreaterThanOrEqualToThreshold``, ``GreaterThanThreshold``, ``LessThanThreshold``,
  ``LessThanOrEqualToThreshold``. The anomaly-detection band operators and metric-math alarms are
  reported as unsupported (:class:`UnsupportedAlarmError`).

>>> a = AlarmDefinition(name="d", period=60, evaluation_periods=3, datapoints_to_alarm=2,
...                     threshold=0.2, comparison="GreaterThanThreshold")
>>> now = dt.datetime(2026, 11, 22, 5, 4, 10, tzinfo=dt.UTC)
>>> t = lambda m: dt.datetime(2026, 11, 22, 5, m, tzinfo=dt.UTC)
>>> pts = {t(1): 0.31, t(2): 0.1, t(3): 0.25}
>>> evaluate(a, pts, now=now, current_state="OK").state
'ALARM'
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from etl.exceptions import DriftlineError

#: Periods retrieved beyond N, so that a few missing ones can be skipped (the guide: N=3 → 5).
EXTRA_RANGE_PERIODS = 2


class UnsupportedAlarmError(DriftlineError):
    """An alarm uses a feature the local evaluator does not implement (skipped, never guessed)."""


class AlarmState(StrEnum):
    OK = "OK"
    ALARM = "ALARM"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


class Comparison(StrEnum):
    GREATER_OR_EQUAL = "GreaterThanOrEqualToThreshold"
    GREATER = "GreaterThanThreshold"
    LESS = "LessThanThreshold"
    LESS_OR_EQUAL = "LessThanOrEqualToThreshold"


class MissingData(StrEnum):
    MISSING = "missing"
    NOT_BREACHING = "notBreaching"
    BREACHING = "breaching"
    IGNORE = "ignore"


BAND_OPERATORS = (
    "LessThanLowerOrGreaterThanUpperThreshold",
    "LessThanLowerThreshold",
    "GreaterThanUpperThreshold",
)
SUPPORTED_STATISTICS = ("Average", "Sum", "Minimum", "Maximum", "SampleCount")

_WORDS = {
    Comparison.GREATER_OR_EQUAL: "greater than or equal to",
    Comparison.GREATER: "greater than",
    Comparison.LESS: "less than",
    Comparison.LESS_OR_EQUAL: "less than or equal to",
}


@dataclass(frozen=True, slots=True)
class AlarmDefinition:
    """The parts of a metric alarm its evaluation needs (as DescribeAlarms returns them)."""

    name: str
    period: int
    evaluation_periods: int
    threshold: float
    comparison: str
    datapoints_to_alarm: int | None = None
    treat_missing_data: str = MissingData.MISSING.value
    statistic: str = "Average"
    namespace: str = ""
    metric_name: str = ""
    dimensions: tuple[tuple[str, str], ...] = ()
    description: str = ""
    arn: str = ""
    state: str = AlarmState.INSUFFICIENT_DATA.value
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.comparison in BAND_OPERATORS:
            raise UnsupportedAlarmError(
                f"alarm {self.name!r}: comparison {self.comparison!r} needs an anomaly-detection"
                " band, which the local evaluator does not implement; use a static threshold"
            )
        if self.comparison not in {c.value for c in Comparison}:
            raise UnsupportedAlarmError(
                f"alarm {self.name!r}: unknown comparison {self.comparison!r}; expected one of"
                f" {[c.value for c in Comparison]}"
            )
        if self.treat_missing_data not in {m.value for m in MissingData}:
            raise UnsupportedAlarmError(
                f"alarm {self.name!r}: TreatMissingData {self.treat_missing_data!r} is not one of"
                f" {[m.value for m in MissingData]}"
            )
        if self.period <= 0 or self.evaluation_periods < 1:
            raise UnsupportedAlarmError(
                f"alarm {self.name!r}: period={self.period} and evaluation_periods="
                f"{self.evaluation_periods} must be positive"
            )
        if not 1 <= self.m <= self.evaluation_periods:
            raise UnsupportedAlarmError(
                f"alarm {self.name!r}: DatapointsToAlarm={self.datapoints_to_alarm} must be in"
                f" 1..EvaluationPeriods ({self.evaluation_periods})"
            )

    @property
    def m(self) -> int:
        """Datapoints to alarm (defaults to N)."""
        dta = self.datapoints_to_alarm
        return self.evaluation_periods if dta is None else dta

    @property
    def n(self) -> int:
        return self.evaluation_periods

    @property
    def operator(self) -> Comparison:
        return Comparison(self.comparison)

    @property
    def missing(self) -> MissingData:
        return MissingData(self.treat_missing_data)

    def breaches(self, value: float) -> bool:
        op = self.operator
        if op is Comparison.GREATER_OR_EQUAL:
            return value >= self.threshold
        if op is Comparison.GREATER:
            return value > self.threshold
        if op is Comparison.LESS:
            return value < self.threshold
        return value <= self.threshold

    @classmethod
    def from_describe(cls, alarm: Mapping[str, Any]) -> AlarmDefinition:
        """Build from one ``MetricAlarms`` entry of DescribeAlarms."""
        name = str(alarm.get("AlarmName", "?"))
        if alarm.get("Metrics") and not alarm.get("MetricName"):
            raise UnsupportedAlarmError(
                f"alarm {name!r} uses metric math (Metrics); the local evaluator handles single"
                " metric alarms only"
            )
        stat = alarm.get("Statistic") or alarm.get("ExtendedStatistic")
        if stat not in SUPPORTED_STATISTICS:
            raise UnsupportedAlarmError(
                f"alarm {name!r}: statistic {stat!r} is not one of {SUPPORTED_STATISTICS}"
            )
        for key in ("Period", "EvaluationPeriods", "Threshold", "ComparisonOperator"):
            if alarm.get(key) is None:
                raise UnsupportedAlarmError(f"alarm {name!r} has no {key}")
        dims = tuple((str(d["Name"]), str(d["Value"])) for d in alarm.get("Dimensions") or [])
        return cls(
            name=name,
            period=int(alarm["Period"]),
            evaluation_periods=int(alarm["EvaluationPeriods"]),
            datapoints_to_alarm=(
                int(alarm["DatapointsToAlarm"]) if alarm.get("DatapointsToAlarm") else None
            ),
            threshold=float(alarm["Threshold"]),
            comparison=str(alarm["ComparisonOperator"]),
            treat_missing_data=str(alarm.get("TreatMissingData") or MissingData.MISSING.value),
            statistic=str(stat),
            namespace=str(alarm.get("Namespace", "")),
            metric_name=str(alarm.get("MetricName", "")),
            dimensions=dims,
            description=str(alarm.get("AlarmDescription") or ""),
            arn=str(alarm.get("AlarmArn", "")),
            state=str(alarm.get("StateValue") or AlarmState.INSUFFICIENT_DATA.value),
            extra=dict(alarm),
        )


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of evaluating an alarm once."""

    state: str
    reason: str
    reason_data: dict[str, Any]
    changed: bool
    #: (period start, value or None when filled, breaching) per evaluated datapoint, oldest first.
    evaluated: tuple[tuple[dt.datetime, float | None, bool], ...] = ()


# -- time helpers ---------------------------------------------------------------------------------
def _epoch(t: dt.datetime) -> float:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def period_starts(now: dt.datetime, period: int, count: int) -> list[dt.datetime]:
    """Starts of the ``count`` most recent complete, epoch-aligned periods, oldest first."""
    end = math.floor(_epoch(now) / period) * period
    return [dt.datetime.fromtimestamp(end - (count - i) * period, tz=dt.UTC) for i in range(count)]


def evaluation_range(alarm: AlarmDefinition, now: dt.datetime) -> list[dt.datetime]:
    return period_starts(now, alarm.period, alarm.n + EXTRA_RANGE_PERIODS)


def _reason_time(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%d/%m/%y %H:%M:%S")


def _data_time(t: dt.datetime) -> str:
    t = t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+0000"


def _num(v: float) -> str:
    return repr(float(v))


def _plural(n: int, word: str = "datapoint") -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- evaluation -----------------------------------------------------------------------------------
def _normalise(
    points: Mapping[dt.datetime, float] | Sequence[tuple[dt.datetime, float]],
) -> dict[float, float]:
    items = points.items() if isinstance(points, Mapping) else points
    out: dict[float, float] = {}
    for t, v in items:
        if v is None or not math.isfinite(float(v)):
            continue
        out[_epoch(t)] = float(v)
    return out


def evaluate(
    alarm: AlarmDefinition,
    datapoints: Mapping[dt.datetime, float] | Sequence[tuple[dt.datetime, float]],
    *,
    now: dt.datetime,
    current_state: str | None = None,
    sample_counts: Mapping[dt.datetime, float] | None = None,
) -> Evaluation:
    """The state CloudWatch would put ``alarm`` in at ``now``, given per-period datapoints.

    ``datapoints`` maps each period's start to its aggregated value (the alarm's statistic);
    periods without data are simply absent.
    """
    current = current_state or alarm.state
    by_epoch = _normalise(datapoints)
    counts = {_epoch(t): c for t, c in (sample_counts or {}).items()}
    starts = evaluation_range(alarm, now)
    present = [(t, by_epoch[_epoch(t)]) for t in starts if _epoch(t) in by_epoch]
    if len(present) >= alarm.n:
        state, breaching, evaluated = _with_all_periods(alarm, present[-alarm.n :])
    elif not present:
        state, breaching, evaluated = _with_no_data(alarm, current)
    else:
        state, breaching, evaluated = _with_missing_periods(alarm, present, starts, current)

    reason = _reason(alarm, state, evaluated, breaching, len(present))
    reason_data = _reason_data(alarm, now, evaluated, counts)
    return Evaluation(
        state=state.value,
        reason=reason,
        reason_data=reason_data,
        changed=state.value != current,
        evaluated=tuple(evaluated),
    )


_Evaluated = list[tuple[dt.datetime, float | None, bool]]


def _with_all_periods(
    alarm: AlarmDefinition, real: list[tuple[dt.datetime, float]]
) -> tuple[AlarmState, int, _Evaluated]:
    """N periods with data: ALARM when at least M of them breach."""
    evaluated: _Evaluated = [(t, v, alarm.breaches(v)) for t, v in real]
    breaching = sum(1 for *_, b in evaluated if b)
    return (AlarmState.ALARM if breaching >= alarm.m else AlarmState.OK), breaching, evaluated


def _with_no_data(alarm: AlarmDefinition, current: str) -> tuple[AlarmState, int, _Evaluated]:
    """No period has data: the missing-data mode alone decides."""
    missing_mode = alarm.missing
    if missing_mode is MissingData.BREACHING:
        return AlarmState.ALARM, alarm.n, []
    if missing_mode is MissingData.NOT_BREACHING:
        return AlarmState.OK, 0, []
    if missing_mode is MissingData.IGNORE:
        return AlarmState(current), 0, []
    return AlarmState.INSUFFICIENT_DATA, 0, []


def _with_missing_periods(
    alarm: AlarmDefinition,
    present: list[tuple[dt.datetime, float]],
    starts: list[dt.datetime],
    current: str,
) -> tuple[AlarmState, int, _Evaluated]:
    """Some of the last N periods have data: the missing ones are filled per the mode."""
    evaluated: _Evaluated = [(t, v, alarm.breaches(v)) for t, v in present]
    fills = alarm.n - len(present)
    real_breaching = sum(1 for *_, b in evaluated if b)
    missing_mode, m = alarm.missing, alarm.m
    breaching = real_breaching + fills if missing_mode is MissingData.BREACHING else real_breaching
    if missing_mode in (MissingData.BREACHING, MissingData.NOT_BREACHING):
        state = AlarmState.ALARM if breaching >= m else AlarmState.OK
    elif real_breaching >= m:
        state = AlarmState.ALARM
    elif real_breaching < len(present):
        # The guide's tables: a real non-breaching point settles OK.
        state = AlarmState.OK
    elif missing_mode is MissingData.IGNORE:
        # breaching points that are too few keep the current state
        state = AlarmState(current)
    else:
        # MISSING: when every real point breaches but too few of them, the alarm goes to ALARM
        # only if the oldest period of the evaluation range breached ("X - - - -"), else
        # INSUFFICIENT_DATA ("- - - - X").
        oldest_breaches = present[0][0] == starts[0] and alarm.breaches(present[0][1])
        state = AlarmState.ALARM if oldest_breaches else AlarmState.INSUFFICIENT_DATA
    # the filled periods: the most recent missing ones within the last N periods first
    seen = {_epoch(t) for t, _ in present}
    filled_at = [t for t in reversed(starts) if _epoch(t) not in seen][:fills]
    fill_breaches = missing_mode is MissingData.BREACHING
    evaluated = sorted(
        evaluated + [(t, None, fill_breaches) for t in filled_at], key=lambda e: e[0]
    )
    return state, breaching, evaluated


def _reason(
    alarm: AlarmDefinition,
    state: AlarmState,
    evaluated: list[tuple[dt.datetime, float | None, bool]],
    breaching: int,
    real: int,
) -> str:
    if state is AlarmState.INSUFFICIENT_DATA:
        return f"Insufficient Data: {_plural(alarm.n)} were unknown."
    if not evaluated:
        kind = {MissingData.BREACHING: "breaching", MissingData.NOT_BREACHING: "not breaching"}
        treated = kind.get(alarm.missing, "missing")
        return (
            f"Threshold Crossed: no datapoints were received for {_plural(alarm.n, 'period')} and"
            f" {_plural(alarm.n)} were treated as [{treated}]."
        )
    total = len(evaluated)
    words = _WORDS[alarm.operator]
    if state is AlarmState.ALARM:
        hits = [(t, v) for t, v, b in reversed(evaluated) if b and v is not None]
        count, verb, neg = breaching, "was" if breaching == 1 else "were", ""
        tail = f"(minimum {_plural(alarm.m)} for OK -> ALARM transition)"
    else:
        hits = [(t, v) for t, v, b in reversed(evaluated) if not b and v is not None]
        count = total - breaching
        verb, neg = ("was" if count == 1 else "were"), "not "
        need = alarm.n - alarm.m + 1
        tail = f"(minimum {_plural(need)} for ALARM -> OK transition)"
    listed = ", ".join(f"{_num(v)} ({_reason_time(t)})" for t, v in hits)
    filled = total - real if total > real else 0
    fill_note = f" ({_plural(filled)} treated as {alarm.missing.value})" if filled else ""
    if total == 1 and alarm.n == 1:  # CloudWatch's wording for single-datapoint alarms
        return (
            f"Threshold Crossed: 1 datapoint [{listed}]{fill_note} was {neg}{words} the"
            f" threshold ({_num(alarm.threshold)})."
        )
    return (
        f"Threshold Crossed: {count} out of the last {total} datapoints [{listed}]{fill_note}"
        f" {verb} {neg}{words} the threshold ({_num(alarm.threshold)}) {tail}."
    )


def _reason_data(
    alarm: AlarmDefinition,
    now: dt.datetime,
    evaluated: list[tuple[dt.datetime, float | None, bool]],
    counts: Mapping[float, float],
) -> dict[str, Any]:
    real = [(t, v) for t, v, _ in evaluated if v is not None]
    start = evaluated[0][0] if evaluated else evaluation_range(alarm, now)[-alarm.n]
    return {
        "version": "1.0",
        "queryDate": _data_time(now),
        "startDate": _data_time(start),
        "statistic": alarm.statistic,
        "period": alarm.period,
        "recentDatapoints": [v for _, v in real],
        "threshold": alarm.threshold,
        "evaluatedDatapoints": [
            {
                "timestamp": _data_time(t),
                **({"sampleCount": counts[_epoch(t)]} if _epoch(t) in counts else {}),
                "value": v,
            }
            for t, v in reversed(real)
        ],
    }


def simulate(
    alarm: AlarmDefinition,
    values: Sequence[float | None],
    *,
    start: dt.datetime,
    initial_state: str = AlarmState.INSUFFICIENT_DATA.value,
) -> list[str]:
    """States after each period of a per-period series (None = missing): for seeded stream tests.

    Period ``i`` covers ``start + i·period``; the alarm is evaluated just after it completes.
    """
    state = initial_state
    points: dict[dt.datetime, float] = {}
    out: list[str] = []
    step = dt.timedelta(seconds=alarm.period)
    for i, v in enumerate(values):
        t = start + i * step
        if v is not None:
            points[t] = v
        state = evaluate(alarm, points, now=t + step, current_state=state).state
        out.append(state)
    return out
