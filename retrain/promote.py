"""Make a registered version the one that serves: deploy, approve (``promoted_at``), publish its
training data's profile as the current drift baseline. Used by a winning run and by the manual
gate (``driftline models approve | rollback``); both then arm the quality alarm at the new
champion's holdout figure (:func:`retrain.quality_alarm.arm_at_promotion`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from etl.aws import AwsClients
from etl.profile import Profile, save_baseline
from etl.settings import Settings
from retrain import registry
from retrain.artifacts import fetch_model
from retrain.backends.base import Deployment, ServingBackend
from retrain.fit import BASELINE_FILE


@dataclass(frozen=True, slots=True)
class Activation:
    version: registry.ModelVersion
    deployment: Deployment
    baseline_uri: str


def activate(
    settings: Settings,
    clients: AwsClients,
    serving: ServingBackend,
    version: registry.ModelVersion,
    *,
    reason: str,
    image_uri: str,
    model_dir: Path | None = None,
    staging_dir: Path,
) -> Activation:
    """Deploy ``version`` (a failed deployment leaves the registry untouched), then approve it
    and publish its baseline as current."""
    s3 = clients.client("s3")
    if model_dir is None:
        model_dir = fetch_model(s3, version.model_data_url, staging_dir / f"v{version.version}")
    deployment = serving.deploy(
        version=version.version,
        model_data_url=version.model_data_url,
        image_uri=image_uri,
        model_dir=model_dir,
    )
    approved = registry.set_status(
        clients.client("sagemaker"),
        version,
        registry.Approval.APPROVED,
        reason=reason,
        properties={"promoted_at": f"{time.time():.6f}"},
    )
    baseline_path = model_dir / BASELINE_FILE
    profile = Profile.from_json(baseline_path.read_bytes(), source=str(baseline_path))
    uri = save_baseline(
        s3, settings.require("lake_bucket"), settings.baseline_prefix, profile, make_current=True
    )
    return Activation(version=approved, deployment=deployment, baseline_uri=uri)
