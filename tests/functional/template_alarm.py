"""Test helper: the template's QualityAlarm created in the emulator as the local stack creates it
(resolved with the stack's parameters: LocalMode, ContractTask), and the retrain rule's pattern."""

from __future__ import annotations

from typing import Any

from infra.local_resolver import Resolver
from infra.local_resources import CloudWatchAlarm
from infra.stack import TEMPLATE_PATH, load_template


def create_quality_alarm(
    cw: Any, *, stack: str = "s", stream: str = "s-events", task: str = "binary_classification"
) -> tuple[str, dict[str, Any]]:
    """PutMetricAlarm of the template's QualityAlarm (without its SNS actions); its name and the
    retrain rule's event pattern."""
    template = load_template(TEMPLATE_PATH)
    refs = {"Stream": stream, "Topic": f"arn:aws:sns:us-east-1:1:{stack}-notifications"}
    r = Resolver(
        template,
        {"LocalMode": "true", "ContractTask": task},
        {"AWS::StackName": stack, "AWS::Region": "us-east-1", "AWS::AccountId": "1",
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
    return str(request["AlarmName"]), pattern
