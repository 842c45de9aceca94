"""A closed quality window's figures as CloudWatch metrics, next to the drift metrics.

Same namespace, same ``[Stream]`` dimension as ``DriftScore``; one datum per defined figure
(:class:`etl.quality.QualityMetric` names: ``QualityAUC``, ``QualityPrecision``, ...,
``LabelCoverage``, ``LabelDelayP90``, ``LabelsJoined``). They go through the drift metrics'
:class:`~consumers.metrics.MetricsPublisher` (batching, retries, never raising).

>>> from etl.quality import QualityFigures
>>> f = QualityFigures(labels=10, predictions=20, labels_changed=0, label_coverage=0.5,
...                    delay_p50_s=None, delay_p90_s=None, delay_p99_s=None, auc=0.8)
>>> [(d["MetricName"], d["Value"]) for d in quality_datums(f, stream_name="s", timestamp=None)]
[('QualityAUC', 0.8), ('LabelCoverage', 0.5), ('LabelsJoined', 10.0)]
"""

from __future__ import annotations

import datetime as dt
import math

from consumers.metrics import Datum, datum_extras
from etl.quality import QualityFigures, QualityMetric

_COUNTS = {QualityMetric.LABELS}
_SECONDS = {
    QualityMetric.LABEL_DELAY_P50,
    QualityMetric.LABEL_DELAY_P90,
    QualityMetric.LABEL_DELAY_P99,
}


def quality_datums(
    figures: QualityFigures,
    *,
    stream_name: str,
    timestamp: dt.datetime | None,
    high_resolution: bool = False,
) -> list[Datum]:
    """The PutMetricData datums of one quality window."""
    extra = datum_extras(timestamp, high_resolution)
    out: list[Datum] = []
    for metric, value in figures.metrics().items():
        if not math.isfinite(value):
            continue
        unit = "Count" if metric in _COUNTS else "Seconds" if metric in _SECONDS else "None"
        out.append(
            {
                "MetricName": metric.value,
                "Dimensions": [{"Name": "Stream", "Value": stream_name}],
                "Value": float(value),
                "Unit": unit,
                **extra,
            }
        )
    return out
