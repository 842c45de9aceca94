"""The SageMaker backend's offline parts: image resolution and the training source bundle."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")


def test_the_sdk_resolves_the_scikit_learn_framework_image() -> None:
    from retrain.backends.sagemaker import resolve_image

    assert resolve_image("us-east-1", "1.2-1", "ml.m5.large") == (
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    )


def test_the_source_bundle_is_the_training_entry_and_the_modules_it_imports(
    tmp_path: Path,
) -> None:
    from retrain.backends.sagemaker import source_bundle
    from retrain.fit import SHIPPED

    # GIVEN the bundle the SKLearn estimator uploads as source_dir
    bundle = source_bundle(tmp_path / "src")
    files = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    # THEN it is train.py and exactly the shipped modules: no requirements file (nothing is
    # installed at job start, so the job runs with network isolation), no contract TOML
    assert files == sorted([*SHIPPED, "train.py"])
    # WHEN its train.py runs from the bundle alone (as in the container), without SM_* variables
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env["PYTHONPATH"] = str(bundle)
    proc = subprocess.run(
        [sys.executable, "train.py"],
        cwd=bundle,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # THEN it is the training contract's entry point
    assert proc.returncode == 2
    assert "SM_CHANNEL_TRAIN and SM_MODEL_DIR must be set" in proc.stderr


@pytest.mark.parametrize("name", ["sagemaker"])
def test_backends_are_chosen_by_settings(name: str) -> None:
    from etl.aws import AwsClients
    from etl.exceptions import ConfigError
    from etl.settings import load_settings
    from retrain.wiring import make_backends

    settings = load_settings({"training_backend": name}, env={}, config_path=None)
    with pytest.raises(ConfigError, match="sagemaker_role_arn: is not set"):
        make_backends(settings, AwsClients())
    local = load_settings(env={}, config_path=None)
    training, serving = make_backends(local, AwsClients())
    assert (training.name, serving.name) == ("local", "local")


def test_the_training_job_gets_the_contract_as_its_own_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sagemaker.sklearn import estimator as sklearn_estimator

    from retrain.backends.base import TrainingRequest
    from retrain.backends.sagemaker import JobConfig, SageMakerTraining

    # GIVEN the SDK's estimator replaced by a recorder (no AWS call; the channel map is the point)
    fits: list[tuple[dict[str, str], str]] = []

    class Recorder:
        def __init__(self, **kwargs: object) -> None:
            self.kwargs = kwargs

        def fit(self, inputs: dict[str, str], wait: bool, job_name: str) -> None:
            fits.append((inputs, job_name))

    monkeypatch.setattr(sklearn_estimator, "SKLearn", Recorder)
    monkeypatch.setattr("sagemaker.session.Session", lambda **_kw: object())
    config = JobConfig(
        role_arn="arn:aws:iam::123456789012:role/r",
        region="us-east-1",
        instance_type="ml.m5.large",
        framework_version="1.2-1",
    )
    backend = SageMakerTraining(None, config)
    # WHEN a run with a contract channel starts
    backend.start(
        TrainingRequest(
            run_id="r1",
            train_dir=tmp_path,
            test_dir=tmp_path,
            train_uri="s3://lake-bucket/retrain/m/r1/train/",
            test_uri="s3://lake-bucket/retrain/m/r1/test/",
            output_uri="s3://lake-bucket/models/m/r1/",
            job_name="driftline-m-r1",
            contract_uri="s3://lake-bucket/retrain/m/r1/contract/",
            baseline_uri="s3://lake-bucket/retrain/m/r1/baseline/",
        )
    )
    # THEN the job's channels are train, test, contract and baseline (/opt/ml/input/data/…)
    assert fits == [
        (
            {
                "train": "s3://lake-bucket/retrain/m/r1/train/",
                "test": "s3://lake-bucket/retrain/m/r1/test/",
                "contract": "s3://lake-bucket/retrain/m/r1/contract/",
                "baseline": "s3://lake-bucket/retrain/m/r1/baseline/",
            },
            "driftline-m-r1",
        )
    ]


def test_create_training_job_asks_for_network_isolation_and_the_stacks_key(
    tmp_path: Path,
) -> None:
    import boto3
    from moto import mock_aws

    from retrain.backends.base import JobStatus, TrainingRequest
    from retrain.backends.sagemaker import JobConfig, SageMakerTraining

    key = "arn:aws:kms:us-east-1:123456789012:key/0000-data"
    with mock_aws():
        # GIVEN the real SDK estimator against moto, the CreateTrainingJob request recorded
        session = boto3.Session(region_name="us-east-1")
        session.client("s3").create_bucket(Bucket="lake-bucket")
        sm = session.client("sagemaker")
        sent: list[dict[str, object]] = []
        sm.meta.events.register(
            "provide-client-params.sagemaker.CreateTrainingJob",
            lambda params, **_kw: sent.append(params),
        )
        config = JobConfig(
            role_arn="arn:aws:iam::123456789012:role/driftline-sagemaker",
            region="us-east-1",
            instance_type="ml.m5.large",
            framework_version="1.2-1",
            max_runtime_s=3600,
            kms_key_arn=key,
        )
        backend = SageMakerTraining(session, config, sagemaker_client=sm)
        # WHEN a run starts its job
        backend.start(
            TrainingRequest(
                run_id="r1",
                train_dir=tmp_path,
                test_dir=tmp_path,
                train_uri="s3://lake-bucket/retrain/m/r1/train/",
                test_uri="s3://lake-bucket/retrain/m/r1/test/",
                output_uri="s3://lake-bucket/models/m/r1/",
                job_name="driftline-m-20260301T000000Z-0a1b2c3d",
                code_uri="s3://lake-bucket/retrain/m/r1/code",
                contract_uri="s3://lake-bucket/retrain/m/r1/contract/",
                baseline_uri="s3://lake-bucket/retrain/m/r1/baseline/",
            )
        )
        # THEN the request isolates the container and encrypts volume and output with our key
        (req,) = sent
        assert req["EnableNetworkIsolation"] is True
        assert req["ResourceConfig"]["VolumeKmsKeyId"] == key  # type: ignore[index]
        assert req["OutputDataConfig"] == {
            "S3OutputPath": "s3://lake-bucket/models/m/r1/",
            "KmsKeyId": key,
        }
        assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
        inputs = {c["ChannelName"]: c for c in req["InputDataConfig"]}  # type: ignore[attr-defined]
        # AND the code travels as an input channel too (an isolated container cannot fetch it)
        assert set(inputs) == {"train", "test", "contract", "baseline", "code"}
        code_uri = inputs["code"]["DataSource"]["S3DataSource"]["S3Uri"]
        assert code_uri.startswith("s3://lake-bucket/retrain/m/r1/code")
        hps = req["HyperParameters"]
        assert hps["sagemaker_program"] == '"train.py"'  # type: ignore[index]
        # AND the job exists under its name
        assert backend.describe("driftline-m-20260301T000000Z-0a1b2c3d").status in set(JobStatus)
