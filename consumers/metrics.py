"""Publish a closed drift window's statistics as CloudWatch metrics.

One datum per feature and statistic, dimensions always ``[Stream, Feature]`` in that order (moto,
like CloudWatch, treats the dimension list as part of the metric's identity), plus the summary
``DriftScore`` (largest calibrated feature score: above 1 is drift at the baseline's false-alarm
rate, see :mod:`etl.drift`), ``MaxPSI``, ``WindowRows``, ``DeadLetterRate`` (dead letters /
records seen) and ``DeadLetters`` with ``[Stream]``. PutMetricData is batched
(≤ 1,000 datums and well under the 1 MB request limit per call). Throttling and server errors are
retried with exponential backoff; a batch that still fails is counted in ``failures`` and logged —
publishing metrics never raises into the data path.

>>> from etl.drift import DriftResult, FeatureDrift
>>> f = FeatureDrift("x", "numeric", "ok", psi=0.31, score=2.5)
>>> r = DriftResult(rows=600, features=(f,), drift_score=2.5, max_psi=0.31)
>>> [d["MetricName"] for d in build_datums(r, stream_name="s", timestamp=None, dead_letters=2)]
['PSI', 'DriftFeatureScore', 'DriftScore', 'MaxPSI', 'WindowRows', 'DeadLetterRate', 'DeadLetters']
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from etl.aws import error_code
from etl.drift import DriftResult

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "Driftline"
MAX_DATUMS_PER_REQUEST = 1000
#: PutMetricData's request limit is 1 MB; stay well below it.
MAX_REQUEST_BYTES = 800_000

#: FeatureDrift attribute -> metric name.
FEATURE_METRICS: tuple[tuple[str, str], ...] = (
    ("psi", "PSI"),
    ("js_distance", "JSDistance"),
    ("ks_statistic", "KSStatistic"),
    ("chi2_pvalue", "ChiSquarePValue"),
    ("null_rate_delta", "NullRateDelta"),
    ("out_of_range_share", "OutOfRangeShare"),
    ("evidence", "DriftEvidence"),
    ("cusum", "DriftCusum"),
    ("score", "DriftFeatureScore"),
)
SUMMARY_METRICS = ("DriftScore", "MaxPSI", "WindowRows", "DeadLetterRate", "DeadLetters")

_RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "InternalFailure",
        "InternalServiceError",
        "InternalServiceFault",
        "ServiceUnavailable",
        "RequestTimeout",
    }
)

Datum = dict[str, Any]


def datum_extras(timestamp: dt.datetime | None, high_resolution: bool) -> dict[str, Any]:
    """The keys every datum of one window shares: its time, and 1-second storage when asked."""
    extra: dict[str, Any] = {}
    if timestamp is not None:
        extra["Timestamp"] = timestamp
    if high_resolution:
        extra["StorageResolution"] = 1
    return extra


def build_datums(
    result: DriftResult,
    *,
    stream_name: str,
    timestamp: dt.datetime | None,
    dead_letters: int,
    high_resolution: bool = False,
) -> list[Datum]:
    """The PutMetricData datums for one window (features first, then the summary)."""
    extra = datum_extras(timestamp, high_resolution)
    stream_dim = {"Name": "Stream", "Value": stream_name}
    return [
        *_feature_datums(result, stream_dim, extra),
        *_summary_datums(result, dead_letters, stream_dim, extra),
    ]


def _datum(
    metric: str, dims: list[dict[str, str]], value: float, unit: str, extra: dict[str, Any]
) -> Datum:
    return {"MetricName": metric, "Dimensions": dims, "Value": value, "Unit": unit, **extra}


def _measured(value: float | None) -> bool:
    """Whether ``value`` was measured (None: nothing measured; inf is not a metric value)."""
    return value is not None and math.isfinite(value)


def _feature_datums(
    result: DriftResult, stream_dim: dict[str, str], extra: dict[str, Any]
) -> list[Datum]:
    """Per feature: its drift measures, with a ``Feature`` dimension."""
    out: list[Datum] = []
    for f in result.features:
        dims = [stream_dim, {"Name": "Feature", "Value": f.name}]
        for attr, metric in FEATURE_METRICS:
            value = getattr(f, attr)
            if _measured(value):
                out.append(_datum(metric, dims, float(value), "None", extra))
    return out


def _summary_datums(
    result: DriftResult, dead_letters: int, stream_dim: dict[str, str], extra: dict[str, Any]
) -> list[Datum]:
    """Per window: drift score, max PSI, rows, the dead-letter rate and count."""
    dims = [stream_dim]
    out = [
        _datum(metric, dims, float(value), "None", extra)
        for metric, value in (("DriftScore", result.drift_score), ("MaxPSI", result.max_psi))
        if value is not None and _measured(value)
    ]
    out.append(_datum("WindowRows", dims, float(result.rows), "Count", extra))
    seen = result.rows + dead_letters
    if seen > 0:
        out.append(_datum("DeadLetterRate", dims, dead_letters / seen, "None", extra))
    out.append(_datum("DeadLetters", dims, float(dead_letters), "Count", extra))
    return out


def _datum_bytes(d: Datum) -> int:
    return len(json.dumps(d, default=str)) + 64


def batches(
    datums: Sequence[Datum],
    *,
    max_datums: int = MAX_DATUMS_PER_REQUEST,
    max_bytes: int = MAX_REQUEST_BYTES,
) -> Iterator[list[Datum]]:
    """Split datums into requests of at most ``max_datums`` and about ``max_bytes`` each."""
    batch: list[Datum] = []
    size = 0
    for d in datums:
        b = _datum_bytes(d)
        if batch and (len(batch) >= max_datums or size + b > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(d)
        size += b
    if batch:
        yield batch


def _is_retryable(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = error_code(exc)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
        return code in _RETRYABLE_CODES or int(status) >= 500
    # botocore's connection/timeout errors (no response): transient
    return type(exc).__module__.startswith("botocore") or isinstance(exc, ConnectionError)


@dataclass
class PublishReport:
    datums: int = 0
    requests: int = 0
    failed_datums: int = 0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How :class:`MetricsPublisher` retries a throttled or failed PutMetricData."""

    max_attempts: int = 5
    backoff_base_s: float = 0.2
    backoff_max_s: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random | None = None


class MetricsPublisher:
    """PutMetricData for drift windows; never raises, counts what it could not publish.

    ``failures`` counts failed requests (after retries), ``failed_datums`` the datums in them.
    """

    def __init__(
        self,
        cloudwatch_client: Any,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        stream_name: str,
        high_resolution: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        retry = retry or RetryPolicy()
        if retry.max_attempts < 1:
            raise ValueError(f"max_attempts={retry.max_attempts} must be >= 1")
        self._cw = cloudwatch_client
        self.namespace = namespace
        self.stream_name = stream_name
        self.high_resolution = high_resolution
        self.max_attempts = retry.max_attempts
        self.backoff_base_s = retry.backoff_base_s
        self.backoff_max_s = retry.backoff_max_s
        self._sleep = retry.sleep
        self._rng = retry.rng or random.Random()
        self.failures = 0
        self.failed_datums = 0
        self.published_datums = 0
        self.retries = 0

    def publish(
        self, result: DriftResult, *, timestamp: dt.datetime | None = None, dead_letters: int = 0
    ) -> PublishReport:
        """Publish one window's metrics. Never raises (except for programming errors)."""
        ts = timestamp or dt.datetime.now(dt.UTC)
        datums = build_datums(
            result,
            stream_name=self.stream_name,
            timestamp=ts,
            dead_letters=dead_letters,
            high_resolution=self.high_resolution,
        )
        return self.put(datums)

    def put(self, datums: Sequence[Datum]) -> PublishReport:
        report = PublishReport(datums=len(datums))
        for batch in batches(datums):
            report.requests += 1
            if not self._put_batch(batch):
                report.failed_datums += len(batch)
        return report

    def _put_batch(self, batch: list[Datum]) -> bool:
        for attempt in range(1, self.max_attempts + 1):
            try:
                self._cw.put_metric_data(Namespace=self.namespace, MetricData=batch)
            except Exception as exc:  # never into the data path: classify, retry or count
                if _is_retryable(exc) and attempt < self.max_attempts:
                    self.retries += 1
                    delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
                    self._sleep(delay * (0.5 + self._rng.random() / 2))
                    continue
                self.failures += 1
                self.failed_datums += len(batch)
                log.error(
                    "PutMetricData of %d datums to %s failed after %d attempt(s): %s"
                    " (metrics dropped; data path unaffected; failures=%d)",
                    len(batch),
                    self.namespace,
                    attempt,
                    exc,
                    self.failures,
                )
                return False
            self.published_datums += len(batch)
            return True
        return False  # pragma: no cover - the loop always returns
