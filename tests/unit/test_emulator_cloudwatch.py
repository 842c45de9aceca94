"""The emulator's GetMetricData gives moto's answers (moto's own code is the oracle) without
scanning every datapoint once per period per query."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.cloudwatch import models

from infra import emulator_cloudwatch

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
ORIGINAL = models.CloudWatchBackend.get_metric_data
STREAM = {"Name": "Stream", "Value": "s"}


def _feature(name: str) -> dict[str, str]:
    return {"Name": "Feature", "Value": name}


def _backend(seed: int) -> Any:
    rng = random.Random(seed)
    cw = models.CloudWatchBackend("us-east-1", "123456789012")
    for ns, name, dims in [
        ("driftline", "DriftScore", [STREAM]),
        ("driftline", "MaxPSI", [STREAM]),
        ("driftline", "DriftFeatureScore", [STREAM, _feature("amount")]),
        ("driftline", "DriftFeatureScore", [STREAM, _feature("hour")]),
        ("other", "DriftScore", []),
        ("driftline", "DriftScore", []),
    ]:  # fmt: skip
        data = [
            {
                "MetricName": name,
                "Dimensions": dims,
                "Value": rng.uniform(0, 3),
                "Timestamp": T0 + timedelta(seconds=rng.uniform(0, 7200)),
                **({"Unit": "Count"} if rng.random() < 0.3 else {}),
            }
            for _ in range(150)
        ]
        cw.put_metric_data(ns, data)
    return cw


def _query(qid: str, name: str, dims: list[dict[str, str]], period: int, stat: str) -> Any:
    metric = {"Namespace": "driftline", "MetricName": name, "Dimensions": dims}
    return {"Id": qid, "MetricStat": {"Metric": metric, "Period": period, "Stat": stat}}


QUERIES = [
    _query("a", "DriftScore", [STREAM], 60, "Maximum"),
    _query("b", "DriftScore", [], 300, "Average"),
    _query("c", "DriftFeatureScore", [STREAM, _feature("hour")], 10, "SampleCount"),
    _query("d", "MaxPSI", [STREAM], 3600, "Sum"),
    _query("e", "Missing", [], 60, "Minimum"),
    {**_query("f", "MaxPSI", [STREAM], 60, "Maximum"), "ReturnData": False},
    {**_query("g", "DriftScore", [], 60, "Maximum"), "Label": "mine"},
]  # fmt: skip


@pytest.mark.parametrize("scan_by", ["TimestampAscending", "TimestampDescending"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_answers_are_motos(seed: int, scan_by: str) -> None:
    cw = _backend(seed)
    emulator_cloudwatch.install()
    fast = models.CloudWatchBackend.get_metric_data
    assert fast is not ORIGINAL
    for start, end in [
        (T0, T0 + timedelta(hours=2)),
        (T0 + timedelta(minutes=17, seconds=3), T0 + timedelta(minutes=95)),
        (T0 - timedelta(hours=3), T0 + timedelta(hours=3)),
    ]:
        want = ORIGINAL(cw, QUERIES, start, end, scan_by)
        got = fast(cw, QUERIES, start, end, scan_by)
        # THEN the same series, value for value, in the same order
        assert got == want
    assert any(r["values"] for r in want)  # the comparison saw data


def test_a_math_expression_goes_to_motos_own_code() -> None:
    cw = _backend(4)
    emulator_cloudwatch.install()
    queries = [{**QUERIES[0], "ReturnData": False}, {"Id": "x", "Expression": "a * 2"}]
    got = models.CloudWatchBackend.get_metric_data(cw, queries, T0, T0 + timedelta(hours=2))
    want = ORIGINAL(cw, queries, T0, T0 + timedelta(hours=2))
    assert got == want and got[0]["id"] == "x"


class _Counted(datetime):
    """A datapoint's timestamp that counts the comparisons made with it."""

    seen = 0

    def __ge__(self, other: Any) -> bool:
        _Counted.seen += 1
        return datetime.__ge__(self, other)

    def __lt__(self, other: Any) -> bool:
        _Counted.seen += 1
        return datetime.__lt__(self, other)

    def __le__(self, other: Any) -> bool:
        _Counted.seen += 1
        return datetime.__le__(self, other)

    def __gt__(self, other: Any) -> bool:
        _Counted.seen += 1
        return datetime.__gt__(self, other)


def test_a_long_range_at_a_short_period_reads_each_datapoint_once() -> None:
    # GIVEN 14 days at a 60 s period (20,160 periods): moto compares every datapoint's time once
    # per period per query (here 20,160 x 900 x 6, the emulator's minutes-long stall)
    cw = _backend(5)
    for md in cw.metric_data:
        md.timestamp = _Counted.fromtimestamp(md.timestamp.timestamp(), UTC)
    emulator_cloudwatch.install()
    _Counted.seen = 0
    # WHEN the emulator's version answers
    out = models.CloudWatchBackend.get_metric_data(
        cw, QUERIES, T0 - timedelta(days=13), T0 + timedelta(days=1)
    )
    # THEN each datapoint's time was compared twice (in the range or not), no more
    assert _Counted.seen <= 2 * len(cw.metric_data) == 1800
    assert sum(len(r["values"]) for r in out) > 0


def test_updating_an_alarm_keeps_its_state_as_cloudwatch_does() -> None:
    # CloudWatch: "When you update an existing alarm, its StateValue is left unchanged". moto
    # built a new alarm in OK, so re-arming the quality alarm at a promotion while it was in
    # ALARM made the local evaluator send a second ALARM event
    emulator_cloudwatch.install()
    cw = models.CloudWatchBackend("us-east-1", "123456789012")
    spec: dict[str, Any] = {
        "namespace": "driftline", "metric_name": "QualityAUC",
        "comparison_operator": "LessThanThreshold", "evaluation_periods": 3, "period": 10,
        "statistic": "Minimum", "description": "", "dimensions": [STREAM], "alarm_actions": [],
    }  # fmt: skip
    cw.put_metric_alarm("s-quality-auc", threshold=0.83, **spec)
    cw.set_alarm_state("s-quality-auc", "fired", '{"x":1}', "ALARM")
    fired = cw.alarms["s-quality-auc"]
    since, history = fired.state_updated_timestamp, list(fired.history)
    # WHEN the threshold is changed
    cw.put_metric_alarm("s-quality-auc", threshold=0.84, **spec)
    # THEN the configuration is new and the state, its reason, time and history are the same
    now = cw.alarms["s-quality-auc"]
    assert now.threshold == 0.84
    assert (now.state_value, now.state_reason, now.state_reason_data) == (
        "ALARM", "fired", '{"x":1}',
    )  # fmt: skip
    assert (now.state_updated_timestamp, now.history) == (since, history)
    # AND a new alarm still starts as moto starts it
    cw.put_metric_alarm("s-other", threshold=1.0, **spec)
    assert cw.alarms["s-other"].state_value == "OK"
