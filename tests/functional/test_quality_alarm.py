"""The quality alarm on the emulator: the template's QualityAlarm as the local stack creates it,
quality windows published next to the drift metrics, `driftline quality` reading them back, the
alarm armed below the champion's holdout AUC, and the local evaluator firing it M of N with the
event the retrain rule matches."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from consumers.metrics import MetricsPublisher
from consumers.quality_metrics import quality_datums
from etl.aws import AwsClients
from etl.quality import ClassificationWindow
from infra.alarm_evaluator import AlarmEvaluator
from infra.commands.quality import latest_figures, set_threshold
from infra.local_resolver import Resolver
from infra.local_resources import CloudWatchAlarm
from infra.stack import TEMPLATE_PATH, load_template

STREAM = "s-events"


def _template_alarm(cw: Any) -> tuple[str, dict[str, Any]]:
    """The QualityAlarm and the retrain rule's pattern, resolved like the local stack does."""
    template = load_template(TEMPLATE_PATH)
    refs = {"Stream": STREAM, "Topic": "arn:aws:sns:us-east-1:1:s-notifications"}
    r = Resolver(
        template,
        {"LocalMode": "true"},
        {"AWS::StackName": "s", "AWS::Region": "us-east-1", "AWS::AccountId": "1",
         "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"},
        ref=lambda lid: refs[lid],
        get_att=lambda lid, attr: f"{lid}.{attr}",
    )  # fmt: skip
    request = CloudWatchAlarm.request(
        r.resolve(template["Resources"]["QualityAlarm"]["Properties"])
    )
    request.pop("AlarmActions"), request.pop("OKActions")
    cw.put_metric_alarm(**request)
    pattern = r.resolve(template["Resources"]["RetrainRule"]["Properties"]["EventPattern"])
    return request["AlarmName"], pattern


def _window(auc_signal: float, seed: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.random(400) < 0.3
    s = 1 / (1 + np.exp(-(rng.normal(0, 1, 400) + auc_signal * y)))
    w = ClassificationWindow()
    w.observe_predictions(500)
    w.update(s, y, delays_s=rng.exponential(30, 400))
    return w.figures()


def test_quality_below_the_armed_line_fires_the_alarm_the_retrain_rule_matches(
    aws: AwsClients, tmp_path: Path
) -> None:
    cw = aws.client("cloudwatch")
    name, pattern = _template_alarm(cw)
    assert name == "s-quality-auc"
    # GIVEN three windows: a good one, then two whose labels say the model got worse
    now = dt.datetime.now(dt.UTC).replace(second=5, microsecond=0)
    p0 = now.replace(second=0) - dt.timedelta(minutes=3)
    publisher = MetricsPublisher(cw, "Driftline", stream_name=STREAM)
    figures = [_window(3.0, 1), _window(0.2, 2), _window(0.1, 3)]
    for i, f in enumerate(figures):
        t = p0 + dt.timedelta(minutes=i, seconds=20)
        assert publisher.put(quality_datums(f, stream_name=STREAM, timestamp=t)).failed_datums == 0
    # WHEN `driftline quality` reads them back
    got = latest_figures(cw, "Driftline", STREAM, hours=1, now=now)
    assert got["QualityAUC"]["value"] == figures[-1].auc  # type: ignore[index]
    assert got["LabelCoverage"]["value"] == 0.8  # type: ignore[index]
    assert got["QualityMAE"] is None  # a binary model publishes no regression figure
    # AND the alarm is not armed yet (threshold 0): nothing fires
    evaluator = AlarmEvaluator(cw, aws.client("events"), clock=lambda: now, state_dir=tmp_path)
    assert [t for t in evaluator.evaluate_once() if t.state == "ALARM"] == []
    # WHEN it is armed at a champion's holdout AUC 0.90 minus a 0.05 margin
    request = set_threshold(cw, name, 0.85)
    assert request["ComparisonOperator"] == "LessThanThreshold" and request["Threshold"] == 0.85
    # THEN two of the last three windows are below: ALARM
    assert figures[0].auc > 0.85 > max(figures[1].auc, figures[2].auc)  # type: ignore[operator]
    transitions = evaluator.evaluate_once()
    assert [(t.alarm_name, t.state) for t in transitions] == [(name, "ALARM")]
    # AND the retrain rule's pattern (drift- or quality- prefix, ALARM) matches its event
    prefixes = [p["prefix"] for p in pattern["detail"]["alarmName"]]
    assert prefixes == ["s-drift-", "s-quality-"] and name.startswith(prefixes[1])
    assert json.loads(json.dumps(pattern))["detail"]["state"]["value"] == ["ALARM"]
