"""The quality alarm's line, from the serving champion's holdout figure: set at every promotion
(:func:`retrain.promote.activate`) and by hand (``driftline quality --arm``).

The alarm watches the figure of the contract's task (the template picks it from its
``ContractTask`` parameter, which ``driftline deploy`` and ``local up`` fill from the contract):

* binary classification: ``QualityAUC`` (Minimum) ``LessThanThreshold`` holdout ``roc_auc`` minus
  ``quality_auc_margin`` (absolute, default 0.05), alarm ``<stack>-quality-auc``;
* regression: ``QualityRMSE`` (Maximum) ``GreaterThanThreshold`` holdout ``rmse`` times
  (1 + ``quality_rmse_margin``) (relative, default 0.25: RMSE has the label's unit), alarm
  ``<stack>-quality-rmse``.

Arming keeps the rest of the alarm's definition as deployed (M of N, period, actions).

>>> spec = alarm_spec(Task.REGRESSION)
>>> spec.metric.value, spec.comparison, line(spec, 2.0, 0.25)
('QualityRMSE', 'GreaterThanThreshold', 2.5)
>>> line(alarm_spec(Task.BINARY_CLASSIFICATION), 0.93, 0.05)
0.88
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from etl.aws import AwsClients
from etl.contract import Contract, Task
from etl.exceptions import ConfigError
from etl.quality import QualityMetric
from etl.settings import Settings
from retrain import registry
from retrain.triggers import quality_alarm_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    """What the quality alarm of a task watches and which holdout figure sets its line."""

    suffix: str
    metric: QualityMetric
    statistic: str
    comparison: str
    holdout_metric: str


_BINARY = AlarmSpec("auc", QualityMetric.AUC, "Minimum", "LessThanThreshold", "roc_auc")
_REGRESSION = AlarmSpec("rmse", QualityMetric.RMSE, "Maximum", "GreaterThanThreshold", "rmse")


def alarm_spec(task: Task | None) -> AlarmSpec:
    return _REGRESSION if task is Task.REGRESSION else _BINARY


def line(spec: AlarmSpec, holdout: float, margin: float) -> float:
    """The threshold: below the holdout AUC by ``margin``, above the holdout RMSE by a share."""
    if spec.comparison == "GreaterThanThreshold":
        return round(holdout * (1.0 + margin), 6)
    return round(holdout - margin, 6)


def default_margin(settings: Settings, task: Task | None) -> float:
    if task is Task.REGRESSION:
        return settings.quality_rmse_margin
    return settings.quality_auc_margin


def alarm_name(settings: Settings, contract: Contract) -> str:
    return quality_alarm_name(settings.stack_name, contract.task)


_KEEP = (
    "AlarmName", "AlarmDescription", "ActionsEnabled", "OKActions", "AlarmActions",
    "InsufficientDataActions", "MetricName", "Namespace", "Statistic", "Dimensions", "Period",
    "EvaluationPeriods", "DatapointsToAlarm", "ComparisonOperator", "TreatMissingData", "Unit",
)  # fmt: skip


def set_threshold(
    cw: Any, alarm: str, threshold: float, *, metric: QualityMetric | None = None
) -> dict[str, Any]:
    """PutMetricAlarm with the alarm's own definition and a new threshold; the request. With
    ``metric``, an alarm watching another metric is refused (a stack deployed for another task)."""
    found = cw.describe_alarms(AlarmNames=[alarm]).get("MetricAlarms", [])
    if not found:
        raise ConfigError(
            "quality_alarm",
            f"no alarm named {alarm!r}; deploy the stack's template (it has QualityAlarm, for a"
            " regression contract with ContractTask=regression: `driftline deploy --contract`)",
        )
    if metric is not None and found[0].get("MetricName") != metric.value:
        raise ConfigError(
            "quality_alarm",
            f"alarm {alarm!r} watches {found[0].get('MetricName')}, not {metric.value}; deploy the"
            " template with the contract's task (`driftline deploy --contract PATH`)",
        )
    request = {k: found[0][k] for k in _KEEP if found[0].get(k) not in (None, "")}
    request["Threshold"] = threshold
    cw.put_metric_alarm(**request)
    return request


@dataclass(frozen=True, slots=True)
class Arming:
    """What arming did: the alarm, the champion and its holdout figure, the line."""

    alarm: str
    champion_version: int
    holdout_metric: str
    holdout: float
    margin: float
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "alarm": self.alarm,
            "champion_version": self.champion_version,
            self.holdout_metric: self.holdout,
            "margin": self.margin,
            "threshold": self.threshold,
        }


def arm(
    cw: Any,
    settings: Settings,
    contract: Contract,
    champion: registry.ModelVersion,
    margin: float | None = None,
) -> Arming:
    """Set the quality alarm's line from ``champion``'s holdout figure (``margin``: the settings'
    for the task when None). Raises :class:`ConfigError` when the figure or the alarm is missing."""
    spec = alarm_spec(contract.task)
    figure = champion.metrics.get(spec.holdout_metric)
    if figure is None or math.isnan(figure):  # missing, or NaN (AUC of a one-class holdout)
        raise ConfigError(
            "champion",
            f"model v{champion.version} has no holdout {spec.holdout_metric} in the registry;"
            " train and promote one with a labelled holdout first (`driftline retrain`)",
        )
    margin = default_margin(settings, contract.task) if margin is None else margin
    name = alarm_name(settings, contract)
    threshold = line(spec, float(figure), margin)
    set_threshold(cw, name, threshold, metric=spec.metric)
    return Arming(name, champion.version, spec.holdout_metric, float(figure), margin, threshold)


def champion_of(sagemaker: Any, group: str) -> registry.ModelVersion:
    champ = registry.champion(registry.list_versions(sagemaker, group))
    if champ is None:
        raise ConfigError(
            "champion",
            "no champion in the model registry; train and promote one first (`driftline retrain`)",
        )
    return champ


def arm_at_promotion(
    settings: Settings, clients: AwsClients, contract: Contract, champion: registry.ModelVersion
) -> Arming | None:
    """:func:`arm` for a promotion that already happened: a stack without the alarm, a champion
    without the figure or a refused call is logged, never fails the promotion (None)."""
    try:
        armed = arm(clients.client("cloudwatch"), settings, contract, champion)
    except (ConfigError, ClientError, BotoCoreError) as exc:
        log.warning("quality alarm not armed for v%d: %s", champion.version, exc)
        return None
    log.info(
        "quality alarm %s armed at %s (v%d holdout %s %.6g)",
        armed.alarm,
        armed.threshold,
        armed.champion_version,
        armed.holdout_metric,
        armed.holdout,
    )
    return armed
