"""MetricsPublisher: datum shape, batching, retries and never raising (pure, recording client)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from botocore.exceptions import ClientError

from consumers.metrics import MetricsPublisher, RetryPolicy, batches, build_datums
from etl.drift import DriftResult, FeatureDrift

TS = dt.datetime(2026, 11, 22, 5, 1, tzinfo=dt.UTC)
RESULT = DriftResult(
    rows=640,
    features=(
        FeatureDrift(
            "amount",
            "numeric",
            "ok",
            rows=640,
            psi=0.31,
            js_distance=0.2,
            ks_statistic=0.15,
            null_rate_delta=0.0,
            out_of_range_share=0.01,
        ),
        FeatureDrift(
            "country",
            "categorical",
            "ok",
            rows=640,
            psi=0.05,
            js_distance=0.1,
            chi2_pvalue=0.002,
            null_rate_delta=-0.01,
            out_of_range_share=0.0,
        ),
        FeatureDrift("device", "unknown", "missing_in_baseline"),
    ),
    drift_score=0.31,
    missing=("device",),
)


class RecordingCloudWatch:
    """Stands in for the CloudWatch client: records calls, fails the first ``fail`` of them."""

    def __init__(self, fail: int = 0, code: str = "Throttling", status: int = 400) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail, self.code, self.status = fail, code, status

    def put_metric_data(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        if len(self.calls) <= self.fail:
            raise ClientError(
                {
                    "Error": {"Code": self.code, "Message": "x"},
                    "ResponseMetadata": {"HTTPStatusCode": self.status},
                },
                "PutMetricData",
            )


def test_datums_per_feature_and_summary_with_dimensions_in_fixed_order() -> None:
    # WHEN a window result is turned into datums
    datums = build_datums(RESULT, stream_name="tx", timestamp=TS, dead_letters=3)
    # THEN each feature gets its statistics (KS numeric, χ² categorical), missing ones nothing
    names = [(d["MetricName"], tuple(x["Value"] for x in d["Dimensions"])) for d in datums]
    assert names == [
        ("PSI", ("tx", "amount")),
        ("JSDistance", ("tx", "amount")),
        ("KSStatistic", ("tx", "amount")),
        ("NullRateDelta", ("tx", "amount")),
        ("OutOfRangeShare", ("tx", "amount")),
        ("PSI", ("tx", "country")),
        ("JSDistance", ("tx", "country")),
        ("ChiSquarePValue", ("tx", "country")),
        ("NullRateDelta", ("tx", "country")),
        ("OutOfRangeShare", ("tx", "country")),
        ("DriftScore", ("tx",)),
        ("WindowRows", ("tx",)),
        ("DeadLetterRate", ("tx",)),
        ("DeadLetters", ("tx",)),
    ]
    # AND dimensions are always [Stream, Feature]; summary values are exact
    assert all(
        [x["Name"] for x in d["Dimensions"]] in (["Stream", "Feature"], ["Stream"]) for d in datums
    )
    assert datums[-4:] == [
        {
            "MetricName": "DriftScore",
            "Dimensions": [{"Name": "Stream", "Value": "tx"}],
            "Value": 0.31,
            "Unit": "None",
            "Timestamp": TS,
        },
        {
            "MetricName": "WindowRows",
            "Dimensions": [{"Name": "Stream", "Value": "tx"}],
            "Value": 640.0,
            "Unit": "Count",
            "Timestamp": TS,
        },
        {
            "MetricName": "DeadLetterRate",
            "Dimensions": [{"Name": "Stream", "Value": "tx"}],
            "Value": 3 / 643,
            "Unit": "None",
            "Timestamp": TS,
        },
        {
            "MetricName": "DeadLetters",
            "Dimensions": [{"Name": "Stream", "Value": "tx"}],
            "Value": 3.0,
            "Unit": "Count",
            "Timestamp": TS,
        },
    ]


def test_high_resolution_sets_storage_resolution_1() -> None:
    datums = build_datums(
        RESULT, stream_name="tx", timestamp=TS, dead_letters=0, high_resolution=True
    )
    assert {d["StorageResolution"] for d in datums} == {1}


def test_batches_hold_at_most_1000_datums_and_respect_the_byte_budget() -> None:
    datums = [{"MetricName": "PSI", "Value": float(i)} for i in range(2_345)]
    sizes = [len(b) for b in batches(datums)]
    assert sizes == [1_000, 1_000, 345]
    small = [len(b) for b in batches(datums[:10], max_bytes=300)]
    assert sum(small) == 10 and max(small) < 10


def test_throttling_is_retried_with_backoff_then_succeeds() -> None:
    # GIVEN a client that throttles twice
    cw, slept = RecordingCloudWatch(fail=2), []
    pub = MetricsPublisher(
        cw, stream_name="tx", retry=RetryPolicy(sleep=slept.append, backoff_base_s=0.2)
    )
    # WHEN a window is published
    report = pub.publish(RESULT, timestamp=TS, dead_letters=0)
    # THEN the third attempt succeeds, with jittered exponential backoff in between
    assert len(cw.calls) == 3 and report.failed_datums == 0 and pub.failures == 0
    assert 0.1 <= slept[0] <= 0.2 and 0.2 <= slept[1] <= 0.4
    assert cw.calls[-1]["Namespace"] == "Driftline"


def test_persistent_server_errors_are_counted_and_never_raised() -> None:
    cw = RecordingCloudWatch(fail=99, code="InternalFailure", status=500)
    pub = MetricsPublisher(
        cw, stream_name="tx", retry=RetryPolicy(sleep=lambda _s: None, max_attempts=4)
    )
    report = pub.publish(RESULT, timestamp=TS, dead_letters=0)
    assert len(cw.calls) == 4
    assert pub.failures == 1 and report.failed_datums == 14 == pub.failed_datums


def test_non_retryable_errors_fail_at_once() -> None:
    cw = RecordingCloudWatch(fail=99, code="InvalidParameterValue", status=400)
    pub = MetricsPublisher(
        cw, stream_name="tx", retry=RetryPolicy(sleep=lambda _s: pytest.fail("no sleep"))
    )
    pub.publish(RESULT, timestamp=TS, dead_letters=0)
    assert len(cw.calls) == 1 and pub.failures == 1
