"""retrain/train.py follows the contract it is given (the ``contract`` channel or ``--contract``):
features and label of any domain, binary classification or regression, timestamps and nulls; the
inference module serves what it trained. Run in a subprocess, like a training container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from etl.contract import Contract, load_contract, parse_contract
from etl.synthetic import generate_frame, generate_records
from retrain.backends.local import hyperparameter_args, sm_env
from retrain.inference import model_fn, output_fn, predict_fn
from retrain.train import CONTRACT_FILE

pytestmark = pytest.mark.functional
REPO = Path(__file__).resolve().parents[2]
SENSOR = REPO / "etl" / "contracts" / "sensor_readings.toml"

#: Regression with every field type as a feature: a time, a nullable float, an int, a bool, text.
DELIVERIES = """
name = "deliveries"
partition_key = "depot"
task = "regression"
[[fields]]
name = "delivery_id"
type = "string"
role = "id"
[[fields]]
name = "dispatched"
type = "timestamp"
role = "event_time"
[[fields]]
name = "depot"
type = "string"
role = "attribute"
[[fields]]
name = "promised_by"
type = "timestamp"
role = "feature"
[[fields]]
name = "km"
type = "float"
role = "feature"
min = 0.0
max = 80.0
[[fields]]
name = "parcels"
type = "int"
role = "feature"
min = 1
max = 30
[[fields]]
name = "fragile"
type = "bool"
role = "feature"
[[fields]]
name = "vehicle"
type = "string"
role = "feature"
allowed = ["bike", "van", "truck"]
[[fields]]
name = "wind_kmh"
type = "float"
role = "feature"
nullable = true
[[fields]]
name = "minutes_late"
type = "float"
role = "label"
"""


def _channels(tmp: Path, contract: Contract, rows: int = 3_000) -> tuple[Path, Path]:
    frame = generate_frame(rows, seed=8, contract=contract)
    train_dir, test_dir = tmp / "train", tmp / "test"
    train_dir.mkdir()
    test_dir.mkdir()
    cut = int(rows * 0.8)
    frame.iloc[:cut].to_parquet(train_dir / "part-0.parquet")
    frame.iloc[cut:].to_parquet(test_dir / "part-0.parquet")
    return train_dir, test_dir


def _train(
    tmp: Path, train_dir: Path, test_dir: Path, *, contract_dir: Path | None, args: list[str]
) -> subprocess.CompletedProcess[str]:
    hps = {"max-iter": "60", "model-id": "job-1"}
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        **sm_env(tmp / "model", train_dir, test_dir, tmp / "output", hps, contract_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "retrain.train", *hyperparameter_args(hps), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_contract_channel_trains_and_serves_the_sensor_contract(tmp_path: Path) -> None:
    # GIVEN sensor readings as train/test channels and the contract as its own channel
    contract = load_contract(SENSOR)
    train_dir, test_dir = _channels(tmp_path, contract)
    channel = tmp_path / "contract"
    channel.mkdir()
    (channel / CONTRACT_FILE).write_text(json.dumps(contract.to_dict()))
    # WHEN the training script runs with SM_CHANNEL_CONTRACT (no --contract)
    proc = _train(tmp_path, train_dir, test_dir, contract_dir=channel, args=[])
    # THEN it trained on the sensor features and label, not the card example's
    assert proc.returncode == 0, proc.stderr
    schema = json.loads((tmp_path / "model" / "model.json").read_text())
    assert [f["name"] for f in schema["features"]] == [f.name for f in contract.features]
    assert (schema["label"], schema["task"]) == ("failed_within_1h", "binary_classification")
    assert schema["contract"] == {"name": "sensor_readings", "hash": contract.hash}
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["test"]["roc_auc"] > 0.75
    # AND the inference module scores a sensor reading (a probability and a label)
    model = model_fn(str(tmp_path / "model"))
    record = generate_records(1, seed=99, contract=contract)[0]
    body, _ = output_fn(predict_fn([record], model), "application/json", model.threshold)
    (prediction,) = json.loads(body)["predictions"]
    assert 0.0 <= prediction["score"] <= 1.0 and isinstance(prediction["label"], bool)


def test_a_regression_contract_with_every_type_trains_on_rmse(tmp_path: Path) -> None:
    # GIVEN a hand-written regression contract with a time, an int, a bool, a string, a nullable
    # float (some nulls) among its features
    path = tmp_path / "deliveries.toml"
    path.write_text(DELIVERIES)
    contract = load_contract(path)
    train_dir, test_dir = _channels(tmp_path, contract)
    # WHEN the script trains with --contract PATH
    proc = _train(tmp_path, train_dir, test_dir, contract_dir=None, args=["--contract", str(path)])
    # THEN the regression's metrics are RMSE, MAE and R² (and the model explains the label)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["task"] == "regression"
    assert set(metrics["test"]) == {"rmse", "mae", "r2", "rows"}
    assert metrics["test"]["r2"] > 0.5 and metrics["test"]["rmse"] > 0
    # AND the served model predicts a value (no label) from a record with an ISO time and a null
    model = model_fn(str(tmp_path / "model"))
    assert model.threshold is None
    record = {**generate_records(1, seed=5, contract=contract)[0], "wind_kmh": None}
    assert isinstance(record["promised_by"], str)
    body, _ = output_fn(predict_fn([record], model), "application/json", model.threshold)
    (prediction,) = json.loads(body)["predictions"]
    assert set(prediction) == {"score"}


def test_a_contract_without_a_label_fails_training_saying_so(tmp_path: Path) -> None:
    # GIVEN the sensor contract with its label demoted to an attribute
    doc = load_contract(SENSOR).to_dict()
    doc.pop("task")
    doc["fields"][-1]["role"] = "attribute"
    contract = parse_contract(doc)
    train_dir, test_dir = _channels(tmp_path, contract, rows=200)
    channel = tmp_path / "contract"
    channel.mkdir()
    (channel / CONTRACT_FILE).write_text(json.dumps(doc))
    # WHEN the script runs THEN it exits 1 with the reason, no traceback
    proc = _train(tmp_path, train_dir, test_dir, contract_dir=channel, args=[])
    assert proc.returncode == 1
    assert "contract 'sensor_readings' declares no label" in proc.stderr
    assert "Traceback" not in proc.stderr
