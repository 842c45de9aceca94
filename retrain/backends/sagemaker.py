"""SageMaker backends: a training job on the scikit-learn framework image; endpoint deployment.

The ``sagemaker`` SDK is imported here only, lazily (it is heavy and must stay off the consumer's
path). The training job runs :mod:`retrain.fit` from a source bundle that carries only the modules
it imports (:func:`source_bundle`), with network isolation and the stack's KMS key on its volume
and output.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.exceptions import RetrainError
from retrain import deploy as endpoint
from retrain.backends.base import Deployment, JobStatus, TrainingJob, TrainingRequest
from retrain.fit import SHIPPED

log = logging.getLogger(__name__)

_REPO = Path(__file__).resolve().parents[2]


def resolve_image(region: str, framework_version: str, instance_type: str) -> str:
    """The scikit-learn framework image the SDK resolves for this region and version."""
    from sagemaker import image_uris

    return str(
        image_uris.retrieve(
            "sklearn", region=region, version=framework_version, instance_type=instance_type
        )
    )


def source_bundle(dest: Path) -> Path:
    """``train.py`` (runs :func:`retrain.fit.main`) and exactly the modules it imports.

    The container runs Python 3.9 with network isolation: the bundle ships only
    :data:`retrain.fit.SHIPPED` (Python-3.9 code, no dependency beyond the image's scikit-learn,
    pandas, numpy, joblib and pyarrow) and no requirements file, so nothing is installed at start.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for rel in SHIPPED:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_REPO / rel, dest / rel)
    (dest / ENTRY_POINT).write_text(
        'from retrain.fit import main\n\nif __name__ == "__main__":\n    raise SystemExit(main())\n'
    )
    return dest


#: The training container's program (at the bundle's root).
ENTRY_POINT = "train.py"


@dataclass(frozen=True)
class JobConfig:
    """How this stack's training jobs run (from settings)."""

    role_arn: str
    region: str
    instance_type: str
    framework_version: str
    max_runtime_s: float = 7200.0
    #: The stack's KMS key for the training volume and the model artifact; None: AWS managed.
    kms_key_arn: str | None = None


class SageMakerTraining:
    """A SageMaker training job on the scikit-learn framework image, started without waiting.

    ``start`` submits the job (the SDK's ``SKLearn`` estimator, ``fit(wait=False)``) under the
    request's job name, with the code staged under ``request.code_uri``, network isolation and
    the stack's key on volume and output; ``describe`` reads its state with
    ``DescribeTrainingJob``. ``config.max_runtime_s`` is the job's stopping condition."""

    name = "sagemaker"

    def __init__(
        self, boto_session: Any, config: JobConfig, *, sagemaker_client: Any = None
    ) -> None:
        self._boto = boto_session
        self.config = config
        self._sm = sagemaker_client

    @property
    def sagemaker(self) -> Any:
        if self._sm is None:
            self._sm = self._boto.client("sagemaker")
        return self._sm

    def image_uri(self) -> str:
        c = self.config
        return resolve_image(c.region, c.framework_version, c.instance_type)

    def start(self, request: TrainingRequest) -> str:
        if not request.job_name:
            raise RetrainError(f"run {request.run_id}: a SageMaker training job needs a name")
        self._create_job(request)
        log.info("training job %s started", request.job_name)
        return request.job_name

    def _create_job(self, request: TrainingRequest) -> None:
        """CreateTrainingJob through the SDK's estimator (it stages the source bundle)."""
        import sagemaker
        from sagemaker.sklearn import estimator as sklearn_estimator

        c = self.config
        session = sagemaker.session.Session(boto_session=self._boto, sagemaker_client=self._sm)
        with tempfile.TemporaryDirectory(prefix="driftline-src-") as tmp:
            estimator = sklearn_estimator.SKLearn(
                entry_point=ENTRY_POINT,
                source_dir=str(source_bundle(Path(tmp))),
                framework_version=c.framework_version,
                instance_type=c.instance_type,
                instance_count=1,
                role=c.role_arn,
                hyperparameters=dict(request.hyperparameters),
                output_path=request.output_uri,
                code_location=request.code_uri or None,
                max_run=int(c.max_runtime_s),
                sagemaker_session=session,
                # the training volume and the model artifact are encrypted with the stack's key
                volume_kms_key=c.kms_key_arn,
                output_kms_key=c.kms_key_arn,
                # nothing to install at start: the container needs no network
                enable_network_isolation=True,
            )
            channels = {"train": request.train_uri, "test": request.test_uri}
            if request.contract_uri:  # /opt/ml/input/data/contract/contract.json in the job
                channels["contract"] = request.contract_uri
            if request.baseline_uri:  # /opt/ml/input/data/baseline/baseline.json in the job
                channels["baseline"] = request.baseline_uri
            estimator.fit(
                channels,
                wait=False,
                job_name=request.job_name,
            )

    def describe(self, job_name: str) -> TrainingJob:
        desc = self.sagemaker.describe_training_job(TrainingJobName=job_name)
        return TrainingJob(
            name=job_name,
            status=JobStatus(desc["TrainingJobStatus"]),
            model_data_url=str(desc.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")),
            failure_reason=str(desc.get("FailureReason", "")),
        )


class SageMakerServing:
    """Blue/green deployment of a registered version to the stack's endpoint."""

    name = "sagemaker"

    def __init__(
        self, sagemaker_client: Any, spec: endpoint.EndpointSpec, *, wait: bool = True
    ) -> None:
        self._sm = sagemaker_client
        self.spec = spec
        self._wait = wait

    def deploy(
        self, *, version: int, model_data_url: str, image_uri: str, model_dir: Path | None
    ) -> Deployment:
        started = time.monotonic()
        p = endpoint.plan(
            self.spec, version=version, image_uri=image_uri, model_data_url=model_data_url
        )
        endpoint.deploy(self._sm, p)
        if self._wait:
            endpoint.wait_in_service(self._sm, p.endpoint_name)
        return Deployment(
            endpoint=p.endpoint_name, model_id=p.model_name, seconds=time.monotonic() - started
        )
