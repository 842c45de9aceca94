"""``driftline quality [--hours H] [--json]``: the stream's latest model-quality figures;
``driftline quality --arm [--margin M]``: set the quality alarm's threshold.

Each figure (``etl.quality.QualityMetric``: AUC, precision, recall, log loss, ECE, MAE, RMSE,
label coverage, label delay percentiles, labels joined) is the latest datapoint the consumers
published under the stream in the last ``--hours``, read back with GetMetricData; the quality
alarm's state (``<stack>-quality-auc``, ``-quality-rmse`` for a regression contract) comes with
them. Figures never published are ``null``.

``--arm`` sets that alarm's threshold again from the serving champion's holdout figure in the
model registry (every promotion does it by itself; retrain/quality_alarm.py): ROC AUC minus
``--margin`` (default ``quality_auc_margin``, 0.05), or for a regression contract RMSE times
(1 + ``--margin``) (default ``quality_rmse_margin``, 0.25; alarm ``<stack>-quality-rmse``). The
template creates it unarmed. The alarm's other settings (M of N, period, actions) stay as
deployed.
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
from retrain.triggers import quality_prefix


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("quality", help="latest model-quality figures")
    p.add_argument("--hours", type=at_least(1), default=3, help="look back (default 3 h)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--arm", action="store_true", help="set the alarm from the champion's holdout figure"
    )
    p.add_argument(
        "--margin",
        type=float,
        default=None,
        help="AUC: below the champion (default quality_auc_margin 0.05); RMSE: share above it"
        " (default quality_rmse_margin 0.25)",
    )
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
    from retrain.quality_alarm import alarm_name
    from retrain.runs import settings_contract

    name = alarm_name(settings, settings_contract(settings))
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


def _arm(settings: Settings, margin: float | None, as_json: bool) -> int:
    from retrain.quality_alarm import arm, champion_of
    from retrain.runs import settings_contract
    from retrain.wiring import model_group

    if margin is not None and margin < 0:
        raise ConfigError("--margin", f"must be >= 0, got {margin}")
    clients = clients_for(settings)
    champion = champion_of(clients.client("sagemaker"), model_group(settings))
    armed = arm(
        clients.client("cloudwatch"), settings, settings_contract(settings), champion, margin
    )
    if as_json:
        print(json.dumps(armed.to_dict(), indent=1))
    else:
        print(
            f"{armed.alarm}: threshold {armed.threshold} (v{armed.champion_version} holdout"
            f" {armed.holdout_metric} {armed.holdout:.4f}, margin {armed.margin})"
        )
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
        print(f"  alarm: none named {quality_prefix(settings.stack_name)}*")
    else:
        print(f"  alarm: {alarm['name']} {alarm['state']} (threshold {alarm['threshold']})")
    return 0
