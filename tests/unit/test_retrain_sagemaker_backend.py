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


def test_the_source_bundle_runs_the_training_entry_point(tmp_path: Path) -> None:
    from retrain.backends.sagemaker import source_bundle

    # GIVEN the bundle the SKLearn estimator uploads as source_dir
    bundle = source_bundle(tmp_path / "src")
    assert sorted(p.name for p in bundle.iterdir()) == [
        "etl",
        "requirements.txt",
        "retrain",
        "train.py",
    ]
    assert (bundle / "etl" / "contracts" / "card_transactions.toml").is_file()
    assert not list(bundle.rglob("__pycache__"))
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
    from retrain.backends.sagemaker import SageMakerTraining

    # GIVEN the SDK's estimator replaced by a recorder (no AWS call; the channel map is the point)
    fits: list[tuple[dict[str, str], str]] = []

    class Recorder:
        def __init__(self, **kwargs: object) -> None:
            self.kwargs = kwargs

        def fit(self, inputs: dict[str, str], wait: bool, job_name: str) -> None:
            fits.append((inputs, job_name))

    monkeypatch.setattr(sklearn_estimator, "SKLearn", Recorder)
    monkeypatch.setattr("sagemaker.session.Session", lambda **_kw: object())
    backend = SageMakerTraining(
        None,
        None,
        role_arn="arn:aws:iam::123456789012:role/r",
        region="us-east-1",
        instance_type="ml.m5.large",
        framework_version="1.2-1",
        work_dir=tmp_path,
    )
    # WHEN a run with a contract channel starts
    backend.start(
        TrainingRequest(
            run_id="r1",
            train_dir=tmp_path,
            test_dir=tmp_path,
            train_uri="s3://b/retrain/m/r1/train/",
            test_uri="s3://b/retrain/m/r1/test/",
            output_uri="s3://b/models/m/r1/",
            job_name="driftline-m-r1",
            contract_uri="s3://b/retrain/m/r1/contract/",
        )
    )
    # THEN the job's channels are train, test and contract (/opt/ml/input/data/contract/)
    assert fits == [
        (
            {
                "train": "s3://b/retrain/m/r1/train/",
                "test": "s3://b/retrain/m/r1/test/",
                "contract": "s3://b/retrain/m/r1/contract/",
            },
            "driftline-m-r1",
        )
    ]


def test_the_training_requirements_are_pinned_wheels_checked_by_hash(tmp_path: Path) -> None:
    import re

    from retrain.backends.sagemaker import source_bundle

    # GIVEN the source bundle the training container pip-installs at job start
    lines = (source_bundle(tmp_path / "src") / "requirements.txt").read_text().splitlines()
    options = [ln for ln in lines if ln.startswith("--")]
    reqs = [ln for ln in lines if ln and not ln.startswith("--")]
    # THEN wheels only, and every requirement is pinned exactly with at least one sha256
    assert options == ["--only-binary=:all:"]
    assert reqs
    for req in reqs:
        assert re.match(r"^[A-Za-z0-9_.-]+==[0-9][^ ]* ", req), req
        assert re.findall(r"--hash=sha256:[0-9a-f]{64}", req), req
