"""CloudWatch alarm semantics: the user guide's table, operators, reasons, seeded streams."""

from __future__ import annotations

import datetime as dt

import pytest

from etl.contract import load_contract
from etl.drift import DriftWindow
from etl.profile import build_profile
from etl.synthetic import Scenario, generate_frame
from infra.alarm_rules import (
    AlarmDefinition,
    UnsupportedAlarmError,
    evaluate,
    period_starts,
    simulate,
)

T0 = dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(minutes=5, seconds=7)  # the 5 complete periods are 05:00 .. 05:04


def alarm(**kw: object) -> AlarmDefinition:
    base: dict[str, object] = dict(
        name="a",
        period=60,
        evaluation_periods=3,
        datapoints_to_alarm=3,
        threshold=0.2,
        comparison="GreaterThanThreshold",
    )
    base.update(kw)
    return AlarmDefinition(**base)  # type: ignore[arg-type]


def series(pattern: str) -> dict[dt.datetime, float]:
    """'0 - X - X' → periods 05:00..05:04, oldest first: 0 not breaching, X breaching, - missing."""
    out = {}
    for i, ch in enumerate(pattern.split()):
        if ch != "-":
            out[T0 + dt.timedelta(minutes=i)] = 0.5 if ch == "X" else 0.1
    return out


# The user guide's two tables ("Configuring how CloudWatch alarms treat missing data", section
# "How alarm state is evaluated when data is missing"): 5 most recent datapoints retrieved, oldest
# first; 0 not breaching, X breaching, - missing. "keep" = retain the current state.
GUIDE_TABLE_3_OF_3 = [
    # datapoints     missing        ignore   breaching  notBreaching
    ("0 - X - X", "OK", "OK", "OK", "OK"),
    ("0 - - - -", "OK", "OK", "OK", "OK"),
    ("- - - - -", "INSUFFICIENT_DATA", "keep", "ALARM", "OK"),
    ("0 X X - X", "ALARM", "ALARM", "ALARM", "ALARM"),
    ("- - - - X", "INSUFFICIENT_DATA", "keep", "ALARM", "OK"),
    ("X - - - -", "ALARM", "keep", "ALARM", "OK"),
]
GUIDE_TABLE_2_OF_3 = [
    ("0 - X - X", "ALARM", "ALARM", "ALARM", "ALARM"),
    ("0 0 X 0 X", "ALARM", "ALARM", "ALARM", "ALARM"),
    ("0 - X - -", "OK", "OK", "ALARM", "OK"),
    ("- - - - 0", "OK", "OK", "ALARM", "OK"),
    ("- - - - X", "INSUFFICIENT_DATA", "keep", "ALARM", "OK"),
]
GUIDE_ROWS = [(3, *r) for r in GUIDE_TABLE_3_OF_3] + [(2, *r) for r in GUIDE_TABLE_2_OF_3]


@pytest.mark.parametrize("row", GUIDE_ROWS, ids=[f"{r[0]}of3:{r[1]}" for r in GUIDE_ROWS])
@pytest.mark.parametrize("current", ["OK", "ALARM", "INSUFFICIENT_DATA"])
def test_missing_data_tables_from_the_user_guide(row: tuple[object, ...], current: str) -> None:
    m, points = int(str(row[0])), str(row[1])
    modes = ("missing", "ignore", "breaching", "notBreaching")
    expected = dict(zip(modes, row[2:], strict=True))
    for mode, want in expected.items():
        # GIVEN an M-of-3 alarm with this TreatMissingData, WHEN evaluated on the row's datapoints
        got = evaluate(
            alarm(treat_missing_data=mode, datapoints_to_alarm=m),
            series(points),
            now=NOW,
            current_state=current,
        )
        # THEN the state is the table's ("keep" = the current state)
        assert got.state == (current if want == "keep" else want), (m, points, mode)
        assert got.changed == (got.state != current)


@pytest.mark.parametrize(
    ("comparison", "value", "breaches"),
    [
        ("GreaterThanOrEqualToThreshold", 0.2, True),
        ("GreaterThanOrEqualToThreshold", 0.19, False),
        ("GreaterThanThreshold", 0.2, False),
        ("GreaterThanThreshold", 0.21, True),
        ("LessThanThreshold", 0.2, False),
        ("LessThanThreshold", 0.19, True),
        ("LessThanOrEqualToThreshold", 0.2, True),
        ("LessThanOrEqualToThreshold", 0.21, False),
    ],
)
def test_every_comparison_operator(comparison: str, value: float, breaches: bool) -> None:
    a = alarm(comparison=comparison, evaluation_periods=1, datapoints_to_alarm=1)
    got = evaluate(a, {T0 + dt.timedelta(minutes=4): value}, now=NOW, current_state="OK")
    assert got.state == ("ALARM" if breaches else "OK")


def test_band_operators_and_metric_math_are_reported_unsupported() -> None:
    with pytest.raises(UnsupportedAlarmError, match="anomaly-detection band"):
        alarm(comparison="LessThanLowerOrGreaterThanUpperThreshold")
    with pytest.raises(UnsupportedAlarmError, match="metric math"):
        AlarmDefinition.from_describe({"AlarmName": "m", "Metrics": [{"Id": "e1"}]})
    with pytest.raises(UnsupportedAlarmError, match="DatapointsToAlarm"):
        alarm(datapoints_to_alarm=4)


def test_two_of_three_alarm_reason_reads_like_cloudwatch() -> None:
    # GIVEN a 2-of-3 alarm, missing data not breaching, and 2 breaching of the last 3 periods
    a = alarm(datapoints_to_alarm=2, treat_missing_data="notBreaching")
    pts = {
        T0 + dt.timedelta(minutes=2): 0.31,
        T0 + dt.timedelta(minutes=3): 0.05,
        T0 + dt.timedelta(minutes=4): 0.25,
    }
    # WHEN evaluated
    got = evaluate(a, pts, now=NOW, current_state="OK")
    # THEN ALARM, with CloudWatch's reason wording (most recent first) and reasonData
    assert got.state == "ALARM" and got.changed
    assert got.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints [0.25 (22/11/26 05:04:00), 0.31"
        " (22/11/26 05:02:00)] were greater than the threshold (0.2) (minimum 2 datapoints for"
        " OK -> ALARM transition)."
    )
    assert got.reason_data == {
        "version": "1.0",
        "queryDate": "2026-11-22T05:05:07.000+0000",
        "startDate": "2026-11-22T05:02:00.000+0000",
        "statistic": "Average",
        "period": 60,
        "recentDatapoints": [0.31, 0.05, 0.25],
        "threshold": 0.2,
        "evaluatedDatapoints": [
            {"timestamp": "2026-11-22T05:04:00.000+0000", "value": 0.25},
            {"timestamp": "2026-11-22T05:03:00.000+0000", "value": 0.05},
            {"timestamp": "2026-11-22T05:02:00.000+0000", "value": 0.31},
        ],
    }
    # AND back below the threshold → OK, worded for the ALARM -> OK transition
    pts[T0 + dt.timedelta(minutes=5)] = 0.1
    ok = evaluate(a, pts, now=NOW + dt.timedelta(minutes=1), current_state="ALARM")
    assert ok.state == "OK"
    assert ok.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints [0.1 (22/11/26 05:05:00), 0.05"
        " (22/11/26 05:03:00)] were not greater than the threshold (0.2) (minimum 2 datapoints"
        " for ALARM -> OK transition)."
    )


def test_single_datapoint_alarm_reason() -> None:
    a = alarm(
        evaluation_periods=1, datapoints_to_alarm=1, comparison="GreaterThanOrEqualToThreshold"
    )
    got = evaluate(a, {T0 + dt.timedelta(minutes=4): 2.0}, now=NOW, current_state="OK")
    assert got.reason == (
        "Threshold Crossed: 1 datapoint [2.0 (22/11/26 05:04:00)] was greater than or equal to the"
        " threshold (0.2)."
    )


def test_insufficient_data_reason() -> None:
    got = evaluate(alarm(), {}, now=NOW, current_state="OK")
    assert (got.state, got.reason) == (
        "INSUFFICIENT_DATA",
        "Insufficient Data: 3 datapoints were unknown.",
    )


def test_periods_are_epoch_aligned_and_only_complete_ones_count() -> None:
    # GIVEN 05:04:59 — the 05:04 period is still open
    starts = period_starts(T0 + dt.timedelta(minutes=4, seconds=59), 60, 3)
    assert starts == [T0 + dt.timedelta(minutes=m) for m in (1, 2, 3)]
    assert period_starts(T0 + dt.timedelta(seconds=301), 300, 1) == [T0]
    # AND a datapoint in the open period is not evaluated yet
    a = alarm(evaluation_periods=1, datapoints_to_alarm=1)
    early = evaluate(
        a, {T0 + dt.timedelta(minutes=4): 0.9}, now=T0 + dt.timedelta(minutes=4, seconds=30)
    )
    assert early.state == "INSUFFICIENT_DATA"


def test_from_describe_reads_a_describe_alarms_entry() -> None:
    a = AlarmDefinition.from_describe(
        {
            "AlarmName": "driftline-drift",
            "AlarmArn": "arn:aws:cloudwatch:us-east-1:1:alarm:x",
            "Namespace": "Driftline",
            "MetricName": "DriftScore",
            "Statistic": "Maximum",
            "Dimensions": [{"Name": "Stream", "Value": "tx"}],
            "Period": 60,
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 2,
            "Threshold": 0.2,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "StateValue": "OK",
        }
    )
    assert (a.m, a.n, a.statistic, a.dimensions, a.state) == (
        2,
        3,
        "Maximum",
        (("Stream", "tx"),),
        "OK",
    )


# -- seeded streams: drift scores from DriftWindow fed to the alarm ------------------------------
CONTRACT = load_contract()
BASELINE = build_profile(
    generate_frame(20_000, seed=1), CONTRACT, created_at="2026-01-01T00:00:00Z"
)
DRIFT_ALARM = alarm(datapoints_to_alarm=2, treat_missing_data="notBreaching", threshold=1.0)
WINDOW_ROWS = 600


def window_scores(scenario: Scenario, windows: int, drift_at: float = 0.5) -> list[float | None]:
    frame = generate_frame(WINDOW_ROWS * windows, seed=2, scenario=scenario, drift_at=drift_at)
    w = DriftWindow(BASELINE, [f.name for f in CONTRACT.features])
    scores: list[float | None] = []
    for i in range(windows):
        w.update(frame.iloc[i * WINDOW_ROWS : (i + 1) * WINDOW_ROWS])
        scores.append(w.close().drift_score)
    return scores


def test_stationary_stream_never_alarms_in_60_windows() -> None:
    # GIVEN 60 windows of stationary data, WHEN the drift score feeds the 2-of-3 alarm at 1
    states = simulate(DRIFT_ALARM, window_scores(Scenario.STATIONARY, 60), start=T0)
    # THEN the alarm never leaves OK
    assert set(states) == {"OK"}


def test_drift_from_window_20_alarms_within_3_windows_of_onset() -> None:
    # GIVEN drift starting at window 20 of 60
    scores = window_scores(Scenario.DRIFT, 60, drift_at=20 / 60)
    states = simulate(DRIFT_ALARM, scores, start=T0)
    # THEN no alarm before the onset, and ALARM within 3 windows of it
    assert "ALARM" not in states[:20]
    first = states.index("ALARM")
    assert 20 <= first <= 22
    assert first == 21  # 2 of 3: the second drifted window
