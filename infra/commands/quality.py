"""``driftline quality [--hours H] [--json]``: the stream's latest model-quality figures;
``driftline quality --arm [--margin M]``: set the quality alarm's threshold.

Each figure (``etl.quality.QualityMetric``: AUC, precision, recall, log loss, ECE, MAE, RMSE,
label coverage, label delay percentiles, labels joined) is the latest datapoint the consumers
published under the stream in the last ``--hours``, read back with GetMetricData; the quality
alarm's state (``<stack>-quality-auc``) comes with them. Figures never published are ``null``.

``--arm`` sets that alarm's threshold to the champion's holdout ROC AUC (the model registry's
``roc_auc`` of the serving version) minus ``--margin`` (default 0.05); the template creates it at
0, i.e. not armed. The alarm's other settings (M of N, period, actions) stay as deployed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from etl.exceptions import ConfigError
from etl.quality import QualityMetric
from etl.settings import Settings
from infra.argtypes import at_least
from infra.context import clients_for, resolve_settings

#: The quality alarm's name after the stack's (the template's QualityAlarm).
QUALITY_ALARM_SUFFIX = "-quality-auc"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("quality", help="latest model-quality figures")
    p.add_argument("--hours", type=at_least(1), default=3, help="look back (default 3 h)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--arm", action="store_true", help="threshold = champion holdout AUC - margin")
    p.add_argument("--margin", type=float, default=0.05, help="below the champion (default 0.05)")
    p.set_defaults(func=_quality)


def latest_figures(
    cw: Any, namespace: str, stream: str, hours: int, now: dt.datetime | None = None
) -> dict[str, dict[str, Any] | None]:
    """The latest datapoint of every quality metric of ``stream`` (None: none published)."""
    end = now or dt.datetime.now(dt.UTC)
    queries = [
        {
            "Id": f"m{i}",
            "Label": m.value,
            "MetricStat": {
                "Metric": {
                    "Namespace": namespace,
                    "MetricName": m.value,
                    "Dimensions": [{"Name": "Stream", "Value": stream}],
                },
                "Period": 60,
                "Stat": "Average",
            },
        }
        for i, m in enumerate(QualityMetric)
    ]
    resp = cw.get_metric_data(
        MetricDataQueries=queries,
        StartTime=end - dt.timedelta(hours=hours),
        EndTime=end + dt.timedelta(minutes=1),
        ScanBy="TimestampDescending",
    )
    out: dict[str, dict[str, Any] | None] = {m.value: None for m in QualityMetric}
    for r in resp.get("MetricDataResults", []):
        points = sorted(zip(r.get("Timestamps", []), r.get("Values", []), strict=True))
        if points:
            t, v = points[-1]
            out[r["Label"]] = {"value": v, "time": t.isoformat()}
    return out


def quality_alarm(cw: Any, settings: Settings) -> dict[str, Any] | None:
    name = f"{settings.stack_name}{QUALITY_ALARM_SUFFIX}"
    found = cw.describe_alarms(AlarmNames=[name]).get("MetricAlarms", [])
    if not found:
        return None
    a = found[0]
    return {
        "name": name,
        "state": a.get("StateValue"),
        "threshold": a.get("Threshold"),
        "reason": a.get("StateReason"),
    }


_KEEP = (
    "AlarmName", "AlarmDescription", "ActionsEnabled", "OKActions", "AlarmActions",
    "InsufficientDataActions", "MetricName", "Namespace", "Statistic", "Dimensions", "Period",
    "EvaluationPeriods", "DatapointsToAlarm", "ComparisonOperator", "TreatMissingData", "Unit",
)  # fmt: skip


def set_threshold(cw: Any, alarm_name: str, threshold: float) -> dict[str, Any]:
    """PutMetricAlarm with the alarm's own definition and a new threshold; the request."""
    found = cw.describe_alarms(AlarmNames=[alarm_name]).get("MetricAlarms", [])
    if not found:
        raise ConfigError(
            "quality_alarm",
            f"no alarm named {alarm_name!r}; deploy the stack's template (it has QualityAlarm)",
        )
    request = {k: found[0][k] for k in _KEEP if found[0].get(k) not in (None, "")}
    request["Threshold"] = threshold
    cw.put_metric_alarm(**request)
    return request


def champion_auc(sagemaker: Any, settings: Settings) -> tuple[int, float]:
    """The serving champion's version and holdout ROC AUC from the model registry."""
    from retrain import registry
    from retrain.wiring import model_group

    champ = registry.champion(registry.list_versions(sagemaker, model_group(settings)))
    if champ is None or "roc_auc" not in champ.metrics:
        raise ConfigError(
            "champion",
            "no champion with a holdout roc_auc in the model registry; train and promote one"
            " first (`driftline retrain`)",
        )
    return champ.version, float(champ.metrics["roc_auc"])


def _arm(settings: Settings, margin: float, as_json: bool) -> int:
    clients = clients_for(settings)
    version, auc = champion_auc(clients.client("sagemaker"), settings)
    name = f"{settings.stack_name}{QUALITY_ALARM_SUFFIX}"
    threshold = round(auc - margin, 6)
    set_threshold(clients.client("cloudwatch"), name, threshold)
    doc = {"alarm": name, "champion_version": version, "holdout_auc": auc, "threshold": threshold}
    print(json.dumps(doc, indent=1) if as_json else f"{name}: threshold {threshold} (v{version}"
          f" holdout AUC {auc:.4f} - {margin})")  # fmt: skip
    return 0


def _quality(args: argparse.Namespace) -> int:
    settings, _ = resolve_settings()
    if args.arm:
        return _arm(settings, args.margin, args.json)
    stream = settings.require("stream_name")
    cw = clients_for(settings).client("cloudwatch")
    figures = latest_figures(cw, settings.metrics_namespace, stream, args.hours)
    alarm = quality_alarm(cw, settings)
    if args.json:
        print(json.dumps({"stream": stream, "figures": figures, "alarm": alarm}, indent=1))
        return 0
    print(f"model quality on stream {stream} (latest in the last {args.hours} h)")
    for name, point in figures.items():
        shown = "-" if point is None else f"{point['value']:.6g}  at {point['time']}"
        print(f"  {name:<18} {shown}")
    if alarm is None:
        print(f"  alarm: none named {settings.stack_name}{QUALITY_ALARM_SUFFIX}")
    else:
        print(f"  alarm: {alarm['name']} {alarm['state']} (threshold {alarm['threshold']})")
    return 0
