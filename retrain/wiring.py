"""How a run is wired from settings: resource names, the backends, the code version, and the
typed dependencies a caller may hand in instead (:class:`RunDeps`).

Nothing here does a run's work; :mod:`retrain.start` (step 1), :mod:`retrain.finish` (step 2)
and :mod:`retrain.gate` (the event gate) take what they need from here.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from etl.aws import AwsClients
from etl.capture import capture_uri
from etl.contract import Contract, contract_for_settings
from etl.exceptions import LabelRequiredError
from etl.settings import Settings
from retrain.backends.base import ServingBackend, TrainingBackend
from retrain.runs import model_name


# -- resources derived from settings ---------------------------------------------------------
def idempotency_table(settings: Settings) -> str:
    return settings.idempotency_table or f"{settings.stack_name}-retrain-idempotency"


def model_group(settings: Settings) -> str:
    return settings.model_package_group or f"{settings.stack_name}-{model_name(settings)}"


def work_dir(settings: Settings) -> Path:
    return Path(settings.model_cache_dir).resolve().parent / "retrain"


def model_cache(settings: Settings) -> Path:
    return Path(settings.model_cache_dir).resolve() / model_name(settings)


def pointer_path(settings: Settings) -> Path:
    """The file the local serving backend points at the model to serve; a model server started
    with ``pointer=pointer_path(settings)`` follows promotions without ``model_server_url``."""
    from retrain.backends.local import POINTER_FILE

    return model_cache(settings) / POINTER_FILE


def drift_prefix(settings: Settings) -> str:
    """The name prefix of this stack's drift alarms (the retrain rule matches the same)."""
    return f"{settings.stack_name}-drift-"


def lock_ttl(settings: Settings, *, wait: bool) -> float:
    """How long a run holds the model's lock: one process's run, or (two steps) the training
    job's longest runtime plus the time to finish."""
    if wait:
        return settings.retrain_lock_ttl_s
    return settings.retrain_lock_ttl_s + settings.sagemaker_training_max_runtime_s


def code_version() -> str:
    """The git commit of this checkout, else the package version."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).parent,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"driftline-{version('driftline')}"
    except PackageNotFoundError:
        return "unknown"


def require_label(contract: Contract) -> None:
    """Retraining needs a label: say so plainly for a contract without one."""
    if contract.label is None:
        raise LabelRequiredError(
            f"contract {contract.name!r} declares no label, so there is no model to retrain; the"
            " lake, warehouse and drift monitoring work without one. To retrain, give the target"
            ' field role = "label" and set task ("binary_classification" or "regression")'
        )


# -- backends ----------------------------------------------------------------------------------
def make_training(settings: Settings, clients: AwsClients) -> TrainingBackend:
    """The training backend the settings name (sagemaker imported only if chosen)."""
    if settings.training_backend == "sagemaker":
        from retrain.backends.sagemaker import JobConfig, SageMakerTraining

        config = JobConfig(
            role_arn=settings.require("sagemaker_role_arn"),
            region=settings.region,
            instance_type=settings.sagemaker_training_instance,
            framework_version=settings.sklearn_framework_version,
            max_runtime_s=settings.sagemaker_training_max_runtime_s,
            kms_key_arn=settings.data_key_arn,
        )
        return SageMakerTraining(
            clients.session, config, sagemaker_client=clients.client("sagemaker")
        )
    from retrain.backends.local import LocalTraining

    return LocalTraining(clients.client("s3"), work_dir(settings))


def make_serving(settings: Settings, clients: AwsClients) -> ServingBackend:
    """The serving backend the settings name."""
    if settings.serving_backend == "sagemaker":
        from retrain.backends.sagemaker import SageMakerServing
        from retrain.deploy import EndpointSpec

        spec = EndpointSpec(
            endpoint_name=settings.require("endpoint_name"),
            role_arn=settings.require("sagemaker_role_arn"),
            instance_type=settings.sagemaker_serving_instance,
            # the stack's endpoint alarms (EndpointErrorAlarmName / EndpointLatencyAlarmName)
            alarm_names=(
                f"{settings.stack_name}-endpoint-errors",
                f"{settings.stack_name}-endpoint-latency",
            ),
            kms_key_arn=settings.data_key_arn,
            # data capture next to the lake: the model-quality join reads it (docs/quality.md)
            capture_s3_uri=capture_uri(settings.lake_bucket) if settings.lake_bucket else None,
        )
        return SageMakerServing(clients.client("sagemaker"), spec)
    from retrain.backends.local import LocalServing

    token = settings.model_server_token_file
    return LocalServing(
        clients.client("s3"),
        model_cache(settings),
        settings.model_server_url,
        Path(token) if token else None,
    )


def make_backends(
    settings: Settings, clients: AwsClients
) -> tuple[TrainingBackend, ServingBackend]:
    """The training and serving backends the settings name."""
    return make_training(settings, clients), make_serving(settings, clients)


# -- what a caller may hand in -------------------------------------------------------------------
@dataclass(frozen=True)
class RunDeps:
    """A run's parts a caller may give instead of the ones the settings name (tests, the CLI,
    the demo). Each is built from settings on first use when not given; ``resolve`` does that
    once, so both steps of a run use the same objects.

    >>> RunDeps(hyperparameters={"max-iter": "50"}).hyperparameters["max-iter"]
    '50'
    """

    training: TrainingBackend | None = None
    serving: ServingBackend | None = None
    contract: Contract | None = None
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    #: How the one-process path waits between ``describe`` calls.
    sleep: Callable[[float], None] = time.sleep

    def contract_for(self, settings: Settings, clients: AwsClients) -> Contract:
        return self.contract or contract_for_settings(settings, clients)

    def training_for(self, settings: Settings, clients: AwsClients) -> TrainingBackend:
        return self.training or make_training(settings, clients)

    def serving_for(self, settings: Settings, clients: AwsClients) -> ServingBackend:
        return self.serving or make_serving(settings, clients)
