"""retrain/train.py under the SageMaker training contract, in a subprocess like a container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from etl.contract import load_contract
from etl.profile import Profile
from etl.synthetic import generate_frame
from retrain.backends.local import hyperparameter_args, sm_env
from retrain.inference import model_fn, predict_fn

pytestmark = pytest.mark.functional
REPO = Path(__file__).resolve().parents[2]


def test_the_script_writes_model_metrics_and_baseline(tmp_path: Path) -> None:
    # GIVEN train and test channels of Parquet and the SM_* environment of a training job
    frame = generate_frame(3000, seed=8)
    train_dir, test_dir = tmp_path / "train", tmp_path / "test"
    train_dir.mkdir()
    test_dir.mkdir()
    frame.iloc[:2400].to_parquet(train_dir / "part-0.parquet")
    frame.iloc[2400:].to_parquet(test_dir / "part-0.parquet")
    hps = {"max-iter": "40", "learning-rate": "0.2", "model-id": "job-1", "seed": "3"}
    env = {
        **os.environ,
        **sm_env(tmp_path / "model", train_dir, test_dir, tmp_path / "output", hps),
    }

    # WHEN the script runs with the hyperparameters as arguments
    proc = subprocess.run(
        [sys.executable, "-m", "retrain.train", *hyperparameter_args(hps)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    # THEN it exits 0 and the model dir holds model, schema, metrics, the baseline and the
    # serving container's program (code/inference.py)
    assert proc.returncode == 0, proc.stderr
    model_dir = tmp_path / "model"
    assert (model_dir / "code" / "inference.py").is_file()
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "baseline.json",
        "code",
        "metrics.json",
        "model.joblib",
        "model.json",
    ]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["train_rows"] == 2400
    assert metrics["test"]["rows"] == 600.0
    assert metrics["test"]["roc_auc"] > 0.8
    assert json.loads((tmp_path / "output" / "metrics.json").read_text()) == metrics
    schema = json.loads((model_dir / "model.json").read_text())
    assert schema["model_id"] == "job-1"
    assert schema["hyperparameters"] == {
        "learning_rate": 0.2,
        "max_iter": 40,
        "max_leaf_nodes": 31,
        "seed": 3,
    }
    contract = load_contract()
    assert [f["name"] for f in schema["features"]] == [f.name for f in contract.features]
    # AND the baseline is a drift profile (etl.profile's format) of exactly the training rows
    profile = Profile.from_json((model_dir / "baseline.json").read_text())
    assert profile.contract_hash == contract.hash
    assert profile.window.rows == 2400
    assert profile.version == metrics["baseline_version"] == schema["baseline_version"]
    assert set(profile.features) == {f.name for f in contract.features}
    # AND the inference module serves the model
    model = model_fn(str(model_dir))
    record = {
        "amount": 10.0,
        "merchant_category": "grocery",
        "hour": 12,
        "distance_from_home_km": 1.0,
        "device": "mobile",
        "country": "US",
    }
    assert 0.0 <= predict_fn([record], model)[0] <= 1.0


def test_missing_contract_variables_fail_with_a_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    proc = subprocess.run(
        [sys.executable, "-m", "retrain.train"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "SM_CHANNEL_TRAIN and SM_MODEL_DIR must be set" in proc.stderr
