"""SageMaker backends: a training job on the scikit-learn framework image; endpoint deployment.

The ``sagemaker`` SDK is imported here only, lazily (it is heavy and must stay off the consumer's
path). The training job runs ``retrain/train.py`` from a source bundle that carries the ``etl`` and
``retrain`` packages (train.py profiles its data with ``etl.profile``).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from etl.exceptions import RetrainError
from retrain import deploy as endpoint
from retrain.backends.base import Deployment, TrainingJob, TrainingRequest

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
    """``train.py`` entry point plus the ``etl`` and ``retrain`` packages and requirements."""
    dest.mkdir(parents=True, exist_ok=True)
    for pkg in ("etl", "retrain"):
        shutil.copytree(
            _REPO / pkg,
            dest / pkg,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    (dest / "train.py").write_text("from retrain.train import main\nraise SystemExit(main())\n")
    (dest / "requirements.txt").write_text(TRAINING_REQUIREMENTS)
    return dest


#: What the training container installs at job start (the framework image has scikit-learn,
#: pandas and numpy; etl.contract also needs pyarrow): pinned, wheels only, and by hash, so pip
#: refuses anything but the exact files reviewed here (the image's CPython 3.9 on x86_64).
TRAINING_REQUIREMENTS = (
    "--only-binary=:all:\n"
    "pyarrow==17.0.0"
    " --hash=sha256:a48ddf5c3c6a6c505904545c25a4ae13646ae1f8ba703c4df4a1bfe4f4006bda"
    " --hash=sha256:a155acc7f154b9ffcc85497509bcd0d43efb80d6f733b0dc3bb14e281f131c8b\n"
)


class SageMakerTraining:
    """A SageMaker training job on the scikit-learn framework image, started without waiting.

    ``start`` submits the job (the SDK's ``SKLearn`` estimator, ``fit(wait=False)``) under the
    request's job name, with the code staged under ``request.code_uri``; ``describe`` reads its
    state with ``DescribeTrainingJob``. ``max_runtime_s`` is the job's stopping condition."""

    name = "sagemaker"

    def __init__(
        self,
        boto_session: Any,
        s3: Any,
        *,
        role_arn: str,
        region: str,
        instance_type: str,
        framework_version: str,
        work_dir: Path,
        max_runtime_s: float = 7200.0,
        sagemaker_client: Any = None,
        kms_key_arn: str | None = None,
    ) -> None:
        self._boto = boto_session
        self._s3 = s3
        self._role = role_arn
        self._region = region
        self._instance = instance_type
        self._version = framework_version
        self._work = work_dir
        self.max_runtime_s = max_runtime_s
        self._sm = sagemaker_client
        self._kms = kms_key_arn

    @property
    def sagemaker(self) -> Any:
        if self._sm is None:
            self._sm = self._boto.client("sagemaker")
        return self._sm

    def image_uri(self) -> str:
        return resolve_image(self._region, self._version, self._instance)

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

        session = sagemaker.session.Session(boto_session=self._boto)
        with tempfile.TemporaryDirectory(prefix="driftline-src-") as tmp:
            estimator = sklearn_estimator.SKLearn(
                entry_point="train.py",
                source_dir=str(source_bundle(Path(tmp))),
                framework_version=self._version,
                instance_type=self._instance,
                instance_count=1,
                role=self._role,
                hyperparameters=dict(request.hyperparameters),
                output_path=request.output_uri,
                code_location=request.code_uri or None,
                max_run=int(self.max_runtime_s),
                sagemaker_session=session,
                # the training volume and the model artifact are encrypted with the stack's key
                volume_kms_key=self._kms,
                output_kms_key=self._kms,
            )
            channels = {"train": request.train_uri, "test": request.test_uri}
            if request.contract_uri:  # /opt/ml/input/data/contract/contract.json in the job
                channels["contract"] = request.contract_uri
            estimator.fit(
                channels,
                wait=False,
                job_name=request.job_name,
            )

    def describe(self, job_name: str) -> TrainingJob:
        desc = self.sagemaker.describe_training_job(TrainingJobName=job_name)
        return TrainingJob(
            name=job_name,
            status=str(desc["TrainingJobStatus"]),
            model_data_url=str(desc.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")),
            failure_reason=str(desc.get("FailureReason", "")),
        )


class SageMakerServing:
    name = "sagemaker"

    def __init__(
        self,
        sagemaker_client: Any,
        *,
        endpoint_name: str,
        role_arn: str,
        instance_type: str,
        alarm_names: Sequence[str] = (),
        wait: bool = True,
        kms_key_arn: str | None = None,
        capture_s3_uri: str | None = None,
    ) -> None:
        self._sm = sagemaker_client
        self._capture = capture_s3_uri
        self._endpoint = endpoint_name
        self._role = role_arn
        self._instance = instance_type
        self._alarms = tuple(alarm_names)
        self._wait = wait
        self._kms = kms_key_arn

    def deploy(
        self, *, version: int, model_data_url: str, image_uri: str, model_dir: Path | None
    ) -> Deployment:
        started = time.monotonic()
        p = endpoint.plan(
            endpoint_name=self._endpoint,
            version=version,
            image_uri=image_uri,
            model_data_url=model_data_url,
            role_arn=self._role,
            instance_type=self._instance,
            alarm_names=self._alarms,
            kms_key_arn=self._kms,
        )
        p = dataclasses.replace(p, capture_s3_uri=self._capture)
        endpoint.deploy(self._sm, p)
        if self._wait:
            endpoint.wait_in_service(self._sm, self._endpoint)
        return Deployment(
            endpoint=self._endpoint, model_id=p.model_name, seconds=time.monotonic() - started
        )
