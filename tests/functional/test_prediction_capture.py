"""The model server captures every prediction in SageMaker's data-capture format to the emulator's
S3, read back as (id, features, score, model version, time); a capture that cannot be written never
fails or delays a prediction, and what it drops is counted."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl.aws import AwsClients
from etl.capture import iter_lines, predictions_of
from etl.synthetic import Scenario, generate_frame
from infra.model_server import CaptureOptions, ServerProcess, start_model_server
from retrain.train import train

pytestmark = pytest.mark.functional
BUCKET = "driftline-test-capture"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("capture-model")
    (root / "data").mkdir()
    generate_frame(2000, seed=4, scenario=Scenario.STATIONARY).to_parquet(
        root / "data" / "train.parquet"
    )
    train(root / "data", root / "m1", hyperparameters={"model_id": "m1", "max_iter": 20})
    return root / "m1"


def _records(n: int) -> list[dict[str, object]]:
    frame = generate_frame(n, seed=9, scenario=Scenario.STATIONARY)
    rows = json.loads(frame.to_json(orient="records", date_format="iso"))
    assert all("transaction_id" in r for r in rows)
    return rows


def _predict(url: str, rows: list[dict[str, object]]) -> dict[str, object]:
    req = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(rows).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # loopback only
        assert resp.status == 200
        doc: dict[str, object] = json.loads(resp.read())
        return doc


def _model(url: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}/model", timeout=10) as resp:  # loopback only
        doc: dict[str, object] = json.loads(resp.read())
        return doc


@pytest.fixture
def server(
    aws: AwsClients, model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    bucket = getattr(request, "param", BUCKET)
    if bucket == BUCKET:
        aws.client("s3").create_bucket(Bucket=BUCKET)
    capture = CaptureOptions(
        f"s3://{bucket}/capture",
        "driftline-local",
        endpoint_url=aws.endpoint_url,
        max_lines=5,
        interval_s=0.2,
    )
    srv = start_model_server(
        tmp_path, model_dir, model_root=model_dir.parent, capture=capture, timeout=120
    )
    try:
        yield srv
    finally:
        srv.stop()


def test_every_prediction_is_captured_and_read_back(server: ServerProcess, aws: AwsClients) -> None:
    # GIVEN a model server capturing to the emulator's S3
    rows = _records(12)
    # WHEN three requests of four records are scored
    answers = [_predict(server.url, rows[i : i + 4]) for i in range(0, 12, 4)]
    s3 = aws.client("s3")
    deadline = time.monotonic() + 20
    keys: list[str] = []
    while time.monotonic() < deadline:
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="capture/").get("Contents", [])
        keys = [o["Key"] for o in listed]
        captured = [
            p
            for k in keys
            for line in iter_lines(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read())
            for p in predictions_of(line)
        ]
        if len(captured) == 12:
            break
        time.sleep(0.3)
    # THEN every record is there once with its id, features, score and the model version, at
    # SageMaker's key layout <prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<name>.jsonl
    assert len(captured) == 12
    assert all(k.split("/")[1:3] == ["driftline-local", "AllTraffic"] for k in keys)
    scores = {p.record_id("transaction_id"): p.score for p in captured}
    served = [p["score"] for a in answers for p in a["predictions"]]  # type: ignore[attr-defined]
    assert [scores[str(r["transaction_id"])] for r in rows] == served
    assert {p.model_version for p in captured} == {"m1"}
    assert all(p.inference_time.endswith("Z") for p in captured)
    stats = _model(server.url)["capture"]
    assert stats == {
        "offered": 3,
        "written": 3,
        "dropped": 0,
        "objects": stats["objects"],
        "held": 0,
    }  # type: ignore[index]


@pytest.mark.parametrize("server", ["no-such-capture-bucket"], indirect=True)
def test_a_capture_that_cannot_be_written_never_fails_a_prediction(server: ServerProcess) -> None:
    # GIVEN a capture destination that does not exist and a buffer of 5 lines
    rows = _records(1)
    # WHEN 40 predictions are made quickly
    started = time.monotonic()
    for _ in range(40):
        _predict(server.url, rows)  # THEN each is answered 200
    elapsed = time.monotonic() - started
    # AND the lines that could not be held or written are counted as dropped, none kept
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        stats = _model(server.url)["capture"]
        if stats["dropped"] == 40:  # type: ignore[index]
            break
        time.sleep(0.3)
    assert stats["offered"] == 40 and stats["written"] == 0 and stats["dropped"] == 40  # type: ignore[index]
    assert elapsed < 30
