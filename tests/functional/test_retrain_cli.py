"""`driftline models | approve | reject | rollback` and `driftline predict` against the emulator
and a local model server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl.aws import AwsClients
from etl.profile import read_pointer
from etl.synthetic import Scenario, generate_frame
from infra.cli import main
from infra.model_server import ServerProcess, start_model_server
from retrain import registry
from retrain.artifacts import upload_model
from retrain.train import train
from tests.functional.template_alarm import create_quality_alarm

pytestmark = pytest.mark.functional
RECORD = {
    "amount": 12.5,
    "merchant_category": "grocery",
    "hour": 3,
    "distance_from_home_km": None,
    "device": "mobile",
    "country": "US",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = start_model_server(tmp_path / "server", None, model_root=tmp_path / "cache")
    try:
        yield srv
    finally:
        srv.stop()


def _served(server: ServerProcess) -> str | None:
    import urllib.request

    with urllib.request.urlopen(f"{server.url}/model", timeout=5) as resp:
        model_id: str | None = json.loads(resp.read())["model_id"]
        return model_id


def test_manual_gate(
    aws: AwsClients,
    emulator: str,
    tmp_path: Path,
    server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN two registered, pending versions with artifacts in the emulator's S3
    s3, sm = aws.client("s3"), aws.client("sagemaker")
    s3.create_bucket(Bucket="lake")
    registry.ensure_group(sm, "driftline-card-transactions")
    frame = generate_frame(4000, seed=6, scenario=Scenario.DRIFT)
    for i, (name, part) in enumerate((("alpha", frame.iloc[:2000]), ("beta", frame.iloc[2000:]))):
        (tmp_path / name).mkdir()
        part.to_parquet(tmp_path / name / "train.parquet")
        train(
            tmp_path / name,
            tmp_path / f"{name}-model",
            hyperparameters={"model_id": name, "max_iter": 20},
        )
        url = upload_model(s3, tmp_path / f"{name}-model", f"s3://lake/models/fraud/{name}")
        registry.register(
            sm,
            "driftline-card-transactions",
            registry.Candidate(
                model_data_url=url,
                image_uri="local",
                metrics={"roc_auc": 0.8 + i / 10},
                lineage={"run_id": name},
            ),
        )
    # AND the stack's quality alarm, unarmed (the stack's name is the default: driftline)
    cw = aws.client("cloudwatch")
    alarm, _ = create_quality_alarm(cw, stack="driftline")

    def line() -> float:
        return float(cw.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["Threshold"])

    assert line() == 0.0
    monkeypatch.chdir(tmp_path)
    for key, value in {
        "ENDPOINT_URL": emulator,
        "LAKE_BUCKET": "lake",
        "MODEL_SERVER_URL": server.url,
        "MODEL_SERVER_TOKEN_FILE": str(server.token_file),
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "STATE_DIR": str(tmp_path / "state"),
    }.items():
        monkeypatch.setenv(f"DRIFTLINE_{key}", value)

    def cli(*argv: str) -> dict[str, object]:
        assert main(list(argv)) == 0
        return dict(json.loads(capsys.readouterr().out))

    # WHEN version 1 then 2 are approved THEN each is served and its baseline is current
    first = cli("models", "approve", "1", "--json")
    assert first["serving"] == 1
    assert _served(server) == "alpha"
    # AND the quality alarm is armed at the new champion's holdout AUC minus the margin (0.05)
    assert first["quality_alarm"] == {
        "alarm": alarm, "champion_version": 1, "roc_auc": 0.8, "margin": 0.05, "threshold": 0.75,
    }  # fmt: skip
    assert line() == 0.75
    assert cli("models", "approve", "2", "--json")["serving"] == 2
    assert _served(server) == "beta"
    assert line() == 0.85
    pointer = read_pointer(s3, "lake", "baselines", "card_transactions")
    assert pointer is not None
    assert (
        pointer.version
        == json.loads((tmp_path / "beta-model" / "model.json").read_text())["baseline_version"]
    )
    # WHEN predicting THEN the endpoint answers
    assert main(["predict", "--json", json.dumps(RECORD)]) == 0
    assert len(json.loads(capsys.readouterr().out)["predictions"]) == 1
    # WHEN rolling back to 1 THEN alpha serves again, and the alarm follows it
    assert cli("models", "rollback", "1", "--json")["serving"] == 1
    assert _served(server) == "alpha"
    assert line() == 0.75
    # WHEN the serving version is rejected THEN the previous champion (2) returns, armed again
    assert cli("models", "reject", "1", "--json", "--reason", "bad canary")["serving"] == 2
    assert _served(server) == "beta"
    assert line() == 0.85
    # AND `driftline quality --arm` re-arms by hand with another margin
    assert cli("quality", "--arm", "--margin", "0.1", "--json")["threshold"] == 0.8
    assert line() == 0.8
    listing = cli("models", "--json")
    rows = listing["versions"]
    assert isinstance(rows, list)
    assert [(r["version"], r["status"], r["serving"]) for r in rows] == [
        (1, "Rejected", False),
        (2, "Approved", True),
    ]
    assert rows[0]["reason"] == "bad canary"
    # AND rolling back to a rejected version is refused with the fix
    assert main(["models", "rollback", "1"]) == 2
    assert "use `driftline models approve 1`" in capsys.readouterr().err
