"""SNS notification of a retrain's outcome: champion vs challenger on the same holdout."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from etl.exceptions import RetrainError


def subject(outcome: Mapping[str, Any]) -> str:
    """A one-line subject (SNS allows up to 100 characters)."""
    if outcome.get("model_version") is None and outcome.get("run_id"):
        return f"driftline: retrain {outcome.get('run_id')} {outcome.get('status')}"[:100]
    metric = outcome.get("metric", "")
    champ = (outcome.get("metrics_champion") or {}).get(metric)
    chall = (outcome.get("metrics_challenger") or {}).get(metric)
    champ_text = "none" if champ is None else f"{champ:.3f}"
    chall_text = "?" if chall is None else f"{chall:.3f}"
    text = (
        f"driftline: model v{outcome.get('model_version')} {outcome.get('status')}"
        f" ({metric} {champ_text} -> {chall_text})"
    )
    return text[:100]


def publish(sns: Any, topic_arn: str, outcome: Mapping[str, Any]) -> str:
    """Publish the outcome document (JSON) with a readable subject; returns the message id."""
    try:
        resp = sns.publish(
            TopicArn=topic_arn,
            Subject=subject(outcome),
            Message=json.dumps(outcome, sort_keys=True, default=str),
            MessageAttributes={
                "status": {"DataType": "String", "StringValue": str(outcome.get("status"))},
                "model_version": {
                    "DataType": "String",
                    "StringValue": str(outcome.get("model_version")),
                },
            },
        )
    except ClientError as exc:
        raise RetrainError(f"SNS publish to {topic_arn} failed: {exc}") from exc
    return str(resp["MessageId"])
