"""SageMaker backends: a training job on the scikit-learn framework image; endpoint deployment.

The ``sagemaker`` SDK is imported here only, lazily (it is heavy and must stay off the consumer's
path). The training job runs ``retrain/train.py`` from a source bundle that carries the ``etl`` and
``retrain`` packages (train.py profiles its data with ``etl.profile``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from etl.exceptions import RetrainError
from retrain import deploy as endpoint
from retrain.artifacts import fetch_model
from retrain.backends.base import Deployment, TrainingRequest, TrainingResult

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
    # the framework image has scikit-learn, pandas and numpy; etl.contract also needs pyarrow
    (dest / "requirements.txt").write_text("pyarrow>=15\n")
    return dest


class SageMakerTraining:
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
        timeout_s: float = 7200.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._boto = boto_session
        self._s3 = s3
        self._role = role_arn
        self._region = region
        self._instance = instance_type
        self._version = framework_version
        self._work = work_dir
        self._timeout = timeout_s
        self._sleep = sleep

    def image_uri(self) -> str:
        return resolve_image(self._region, self._version, self._instance)

    def train(self, request: TrainingRequest) -> TrainingResult:
        import sagemaker
        from sagemaker.sklearn import estimator as sklearn_estimator

        started = time.monotonic()
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
                sagemaker_session=session,
                base_job_name="driftline",
            )
            estimator.fit({"train": request.train_uri, "test": request.test_uri}, wait=False)
        job = str(estimator.latest_training_job.name)  # type: ignore[attr-defined]
        sm = self._boto.client("sagemaker")
        delay, deadline = 15.0, time.monotonic() + self._timeout
        while True:
            desc = sm.describe_training_job(TrainingJobName=job)
            status = desc["TrainingJobStatus"]
            if status == "Completed":
                break
            if status in ("Failed", "Stopped"):
                raise RetrainError(f"training job {job} {status}: {desc.get('FailureReason', '')}")
            if time.monotonic() > deadline:
                raise RetrainError(f"training job {job} still {status} after {self._timeout:.0f}s")
            self._sleep(delay)
            delay = min(delay * 1.5, 120.0)
        url = str(desc["ModelArtifacts"]["S3ModelArtifacts"])
        model_dir = fetch_model(self._s3, url, self._work / request.run_id / "model")
        return TrainingResult(
            model_data_url=url,
            model_dir=model_dir,
            image_uri=self.image_uri(),
            seconds=time.monotonic() - started,
            job_name=job,
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
    ) -> None:
        self._sm = sagemaker_client
        self._endpoint = endpoint_name
        self._role = role_arn
        self._instance = instance_type
        self._alarms = tuple(alarm_names)
        self._wait = wait

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
        )
        endpoint.deploy(self._sm, p)
        if self._wait:
            endpoint.wait_in_service(self._sm, self._endpoint)
        return Deployment(
            endpoint=self._endpoint, model_id=p.model_name, seconds=time.monotonic() - started
        )
