"""MetricsPublisher against the emulator: datums land under the right metric identity."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from consumers.metrics import MetricsPublisher, RetryPolicy
from etl.aws import AwsClients
from etl.contract import load_contract
from etl.drift import DriftWindow
from etl.profile import build_profile

pytestmark = pytest.mark.functional


def _result() -> Any:
    rng = np.random.default_rng(0)
    c = load_contract()
    base = build_profile(
        {"amount": rng.normal(0, 1, 5_000), "country": rng.choice(["US", "GB"], 5_000)},
        c,
        features=["amount", "country"],
    )
    w = DriftWindow(base)
    w.update({"amount": rng.normal(1, 1, 800), "country": rng.choice(["US", "GB"], 800)})
    return w.result()


def test_published_window_is_readable_per_stream_and_feature(aws: AwsClients) -> None:
    # GIVEN a publisher on the emulator's CloudWatch
    cw = aws.client("cloudwatch")
    ts = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=2)
    pub = MetricsPublisher(cw, stream_name="tx-stream")
    result = _result()
    # WHEN a window is published
    report = pub.publish(result, timestamp=ts, dead_letters=4)
    # THEN every datum went out in one request
    assert report.failed_datums == 0 and report.requests == 1 and pub.failures == 0
    # AND the drift score reads back under [Stream]
    got = cw.get_metric_statistics(
        Namespace="Driftline",
        MetricName="DriftScore",
        Dimensions=[{"Name": "Stream", "Value": "tx-stream"}],
        StartTime=ts - dt.timedelta(minutes=1),
        EndTime=ts + dt.timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert [d["Maximum"] for d in got] == [pytest.approx(result.drift_score)]
    # AND per-feature PSI reads back under [Stream, Feature]
    metrics = cw.list_metrics(Namespace="Driftline", MetricName="PSI")["Metrics"]
    assert sorted(tuple((d["Name"], d["Value"]) for d in m["Dimensions"]) for m in metrics) == [
        (("Stream", "tx-stream"), ("Feature", "amount")),
        (("Stream", "tx-stream"), ("Feature", "country")),
    ]
    dead = cw.get_metric_statistics(
        Namespace="Driftline",
        MetricName="DeadLetters",
        Dimensions=[{"Name": "Stream", "Value": "tx-stream"}],
        StartTime=ts - dt.timedelta(minutes=1),
        EndTime=ts + dt.timedelta(minutes=1),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    assert [d["Sum"] for d in dead] == [4.0]


class ThrottlingFirst:
    """The real client, but the first ``n`` PutMetricData calls are throttled (moto never is)."""

    def __init__(self, real: Any, n: int) -> None:
        self.real, self.n, self.calls = real, n, 0

    def put_metric_data(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.n:
            raise ClientError(
                {
                    "Error": {"Code": "Throttling", "Message": "Rate exceeded"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
                "PutMetricData",
            )
        return self.real.put_metric_data(**kwargs)


def test_injected_throttling_is_retried_and_the_data_arrives(aws: AwsClients) -> None:
    cw = aws.client("cloudwatch")
    pub = MetricsPublisher(
        ThrottlingFirst(cw, 2), stream_name="s2", retry=RetryPolicy(sleep=lambda _s: None)
    )
    report = pub.publish(_result(), dead_letters=0)
    assert report.failed_datums == 0 and pub.retries == 2
    assert cw.list_metrics(Namespace="Driftline", MetricName="WindowRows")["Metrics"]


def test_emulator_down_is_counted_not_raised() -> None:
    # GIVEN a client pointed at a closed port
    from infra.procs import free_port

    cw = AwsClients(endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1).client(
        "cloudwatch"
    )
    pub = MetricsPublisher(
        cw, stream_name="s3", retry=RetryPolicy(sleep=lambda _s: None, max_attempts=2)
    )
    report = pub.publish(_result(), dead_letters=0)
    assert pub.failures == 1 and report.failed_datums == report.datums
