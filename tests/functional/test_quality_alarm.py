"""The quality alarm on the emulator: the template's QualityAlarm as the local stack creates it,
quality windows published next to the drift metrics, `driftline quality` reading them back, the
alarm armed below the champion's holdout AUC, and the local evaluator firing it M of N with the
event the retrain rule matches."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from consumers.metrics import MetricsPublisher
from consumers.quality_metrics import quality_datums
from etl.aws import AwsClients
from etl.contract import load_contract, parse_contract
from etl.exceptions import ConfigError
from etl.quality import ClassificationWindow, RegressionWindow
from etl.settings import load_settings
from infra.alarm_evaluator import AlarmEvaluator
from infra.commands.quality import latest_figures
from retrain import registry
from retrain.quality_alarm import arm, set_threshold
from tests.functional.template_alarm import create_quality_alarm

STREAM = "s-events"


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
    name, pattern = create_quality_alarm(cw, stream=STREAM)
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


def _regression_window(noise: float, seed: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.normal(20.0, 5.0, 300)
    w = RegressionWindow()
    w.observe_predictions(300)
    w.update(y + rng.normal(0.0, noise, 300), y, delays_s=rng.exponential(30, 300))
    return w.figures()


def test_a_regression_contracts_alarm_fires_when_rmse_rises_above_the_armed_line(
    aws: AwsClients, tmp_path: Path
) -> None:
    # GIVEN the template's quality alarm for a regression contract (ContractTask=regression)
    cw = aws.client("cloudwatch")
    name, _ = create_quality_alarm(cw, stream=STREAM, task="regression")
    assert name == "s-quality-rmse"
    # AND three windows of RMSE ~2, then ~4 and ~5 (the model got worse)
    now = dt.datetime.now(dt.UTC).replace(second=5, microsecond=0)
    p0 = now.replace(second=0) - dt.timedelta(minutes=3)
    publisher = MetricsPublisher(cw, "Driftline", stream_name=STREAM)
    figures = [_regression_window(2.0, 1), _regression_window(4.0, 2), _regression_window(5.0, 3)]
    for i, f in enumerate(figures):
        t = p0 + dt.timedelta(minutes=i, seconds=20)
        assert publisher.put(quality_datums(f, stream_name=STREAM, timestamp=t)).failed_datums == 0
    evaluator = AlarmEvaluator(cw, aws.client("events"), clock=lambda: now, state_dir=tmp_path)
    # THEN unarmed, nothing fires
    assert [t for t in evaluator.evaluate_once() if t.state == "ALARM"] == []
    # WHEN armed from a champion whose holdout RMSE is 2.4 (line 2.4 x 1.25 = 3.0)
    settings = load_settings({"stack_name": "s"}, env={}, config_path=None)
    champion = registry.ModelVersion(
        1, "arn:v1", registry.Approval.APPROVED, "s3://m", {"rmse": 2.4}
    )
    armed = arm(cw, settings, parse_contract(tomllib.loads(REGRESSION_CONTRACT)), champion)
    assert (armed.alarm, armed.holdout_metric, armed.threshold) == (name, "rmse", 3.0)
    # THEN two of the last three windows are above it: ALARM
    assert figures[0].rmse < 3.0 < min(figures[1].rmse, figures[2].rmse)
    transitions = evaluator.evaluate_once()
    assert [(t.alarm_name, t.state) for t in transitions] == [(name, "ALARM")]
    # AND arming a binary contract's line on it is refused: the stack was deployed for regression
    with pytest.raises(ConfigError, match="quality-auc"):
        arm(cw, settings, load_contract(), replace(champion, metrics={"roc_auc": 0.9}))


REGRESSION_CONTRACT = """
name = "deliveries"
partition_key = "depot"
task = "regression"
[[fields]]
name = "delivery_id"
type = "string"
role = "id"
[[fields]]
name = "dispatched"
type = "timestamp"
role = "event_time"
[[fields]]
name = "depot"
type = "string"
role = "attribute"
[[fields]]
name = "km"
type = "float"
role = "feature"
[[fields]]
name = "minutes_late"
type = "float"
role = "label"
"""
