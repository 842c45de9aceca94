"""Captured predictions into the lake through the real parts: `driftline local up` starts its model
server with capture on (to s3://<lake>/capture/, the SageMaker endpoint's prefix), a promoted
model answers, `driftline lake capture` ingests what it captured (a malformed line goes to the
dead letters with its reason) and `driftline lake query` (DuckDB) reads the predictions table back;
re-runs and concurrent runs write every prediction once."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from etl.aws import AwsClients
from etl.capture import CAPTURE_PREFIX, capture_line
from etl.capture_lake import handler, ingester_for
from etl.contract import load_contract
from etl.settings import load_settings
from etl.synthetic import Scenario, generate_frame
from infra import local
from infra.cli import main
from retrain.backends.local import LocalServing
from retrain.train import train
from retrain.wiring import model_cache

pytestmark = pytest.mark.functional
CONTRACT = load_contract()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ingest-model")
    (root / "data").mkdir()
    generate_frame(2000, seed=4, scenario=Scenario.STATIONARY).to_parquet(
        root / "data" / "train.parquet"
    )
    train(root / "data", root / "m1", hyperparameters={"model_id": "m1", "max_iter": 20})
    return root / "m1"


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[local.LocalUp]:
    """A local stack with its model server (no warehouse, services or console: not needed)."""
    state = tmp_path / "state"
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(state))
    monkeypatch.setenv("DRIFTLINE_MODEL_CACHE_DIR", str(tmp_path / "models"))
    (tmp_path / "none.toml").write_text("")
    monkeypatch.setenv("DRIFTLINE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("DRIFTLINE_ENDPOINT_URL", raising=False)
    up = local.up(
        directory=state,
        parts=local.Parts(warehouse=False, services=False, console=False, model_server=True),
    )
    try:
        yield up
    finally:
        local.down(directory=state)


def _records(n: int, seed: int) -> list[dict[str, Any]]:
    frame = generate_frame(n, seed=seed, scenario=Scenario.STATIONARY)
    rows: list[dict[str, Any]] = json.loads(frame.to_json(orient="records", date_format="iso"))
    return rows


def _predict(url: str, rows: list[dict[str, Any]]) -> list[float]:
    req = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(rows).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # loopback only
        return [p["score"] for p in json.loads(resp.read())["predictions"]]


def _wait_captured(url: str, n: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/model", timeout=10) as resp:  # loopback only
            if json.loads(resp.read())["capture"]["written"] >= n:
                return
        time.sleep(0.3)
    raise AssertionError(f"the model server did not write {n} capture lines in 30 s")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert main(list(argv)) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_local_up_captures_and_lake_capture_makes_the_predictions_queryable(
    stack: local.LocalUp, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = stack.state
    # GIVEN the local stack's model server, recorded in the state, capturing to the lake bucket
    server = state.extra["model_server"]
    assert state.pids["model_server"] == server["pid"]
    bucket = state.outputs["LakeBucket"]
    cmdline = Path(f"/proc/{server['pid']}/cmdline").read_bytes().split(b"\0")
    assert cmdline[cmdline.index(b"--capture-s3") + 1] == f"s3://{bucket}/capture".encode()
    # AND a promoted model (the local serving backend: the cache's pointer, the server reloaded)
    settings = local.local_settings(state)
    clients = AwsClients(region=state.region, endpoint_url=state.endpoint)
    token = Path(server["token_file"])
    serving = LocalServing(clients.client("s3"), model_cache(settings), server["url"], token)
    serving.deploy(version=1, model_data_url="", image_uri="local", model_dir=model_dir)
    # WHEN 10 records are scored in two requests and the captures reach S3
    rows = _records(10, seed=9)
    scores = _predict(server["url"], rows[:4]) + _predict(server["url"], rows[4:])
    _wait_captured(server["url"], 2)
    # AND a capture object with one good line and one malformed line lies next to them
    good = capture_line(
        json.dumps([rows[0]]).encode(),
        "application/json",
        b'{"predictions": [{"score": 0.5}]}',
        "application/json",
        event_id="extra",
        when=time.time(),
        model_version="hand",
    )
    key = f"{CAPTURE_PREFIX}/{settings.endpoint_name}/AllTraffic/2026/01/05/09/hand.jsonl"
    body = f"{good}\n{{oops\n".encode()
    clients.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    # WHEN `driftline lake capture` runs
    [report] = _cli(capsys, "lake", "capture", "--json")
    # THEN every captured prediction became a row, the malformed line a dead letter
    table = f"{CONTRACT.name}_predictions"
    assert (report["table"], report["rows"], report["dead_letters"]) == (table, 11, 1)
    assert report["objects"] >= 2 and report["skipped"] == 0
    # AND DuckDB reads the predictions table back with the ids, scores and model version served
    got = _cli(
        capsys,
        "lake", "query", "--json",
        f"SELECT transaction_id, prediction_score, model_version FROM {table}"
        " WHERE model_version <> 'hand'",
    )  # fmt: skip
    served = {str(r["transaction_id"]): s for r, s in zip(rows, scores, strict=True)}
    assert {g["transaction_id"]: g["prediction_score"] for g in got} == served
    assert {g["model_version"] for g in got} == {"m1"}
    [dead] = _cli(capsys, "lake", "query", "--json", f"SELECT * FROM {table}_dead_letters")
    assert dead["reason"] == "capture_not_json" and dead["payload"] == "{oops"
    # WHEN it runs again THEN every object is skipped and nothing is written twice
    [again] = _cli(capsys, "lake", "capture", "--json")
    assert (again["objects"], again["rows"], again["skipped"]) == (0, 0, report["objects"])
    [count] = _cli(capsys, "lake", "query", "--json", f"SELECT count(*) AS n FROM {table}")
    assert count["n"] == 11


def test_concurrent_and_windowed_ingests_write_each_prediction_once(
    aws: AwsClients, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN six capture objects of three invocations of two records each
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="lake")
    aws.client("glue").create_database(DatabaseInput={"Name": "lakedb"})
    rows = _records(36, seed=3)
    for obj in range(6):
        lines = []
        for inv in range(3):
            pair = rows[obj * 6 + inv * 2 : obj * 6 + inv * 2 + 2]
            out = json.dumps({"predictions": [{"score": 0.1}, {"score": 0.9}]}).encode()
            lines.append(
                capture_line(
                    json.dumps(pair).encode(),
                    "application/json",
                    out,
                    "application/json",
                    event_id=f"e{obj}-{inv}",
                    when=time.time(),
                )
            )
        key = f"capture/ep/AllTraffic/2026/01/05/09/o{obj}.jsonl"
        s3.put_object(Bucket="lake", Key=key, Body="\n".join(lines).encode())
    settings = load_settings(
        {"endpoint_url": aws.endpoint_url, "lake_bucket": "lake", "glue_database": "lakedb"},
        env={},
        config_path=None,
    )
    # WHEN an ingest that looks back one second finds them all older
    time.sleep(1.5)
    from datetime import UTC, datetime, timedelta

    recent = ingester_for(settings, aws, CONTRACT).ingest(
        "lake", "capture", since=datetime.now(UTC) - timedelta(seconds=1)
    )
    assert (recent.objects, recent.older) == (0, 6)
    # WHEN three ingests run at the same time
    with ThreadPoolExecutor(3) as pool:
        reports = list(
            pool.map(
                lambda _: ingester_for(settings, aws, CONTRACT).ingest("lake", "capture"), [0, 1, 2]
            )
        )
    # THEN between them every object was ingested (some twice: the same keys), and the table
    # holds each prediction once
    assert all(r.objects + r.skipped == 6 for r in reports)
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(**aws.s3_filesystem_kwargs())
    data = ds.dataset(f"lake/lake/{CONTRACT.name}_predictions/", filesystem=fs, partitioning="hive")
    ids = data.to_table(columns=["transaction_id"]).column("transaction_id").to_pylist()
    assert sorted(ids) == sorted(str(r["transaction_id"]) for r in rows)

    # WHEN the scheduled Lambda's handler runs (the template's environment) after one more object
    extra = capture_line(
        json.dumps([{"transaction_id": "late-1", "amount": 1.0}]).encode(),
        "application/json",
        b'{"predictions": [{"score": 0.7}]}',
        "application/json",
        event_id="late",
        when=time.time(),
    )
    s3.put_object(Bucket="lake", Key="capture/ep/AllTraffic/2026/01/05/10/late.jsonl", Body=extra)
    (tmp_path / "none.toml").write_text("")
    for key, value in {
        "CONFIG": str(tmp_path / "none.toml"),
        "ENDPOINT_URL": aws.endpoint_url or "",
        "LAKE_BUCKET": "lake",
        "GLUE_DATABASE": "lakedb",
    }.items():
        monkeypatch.setenv(f"DRIFTLINE_{key}", value)
    report = handler({"since_s": 3600})
    # THEN it ingests the new object and skips the six already in the table
    assert (report["objects"], report["skipped"], report["rows"]) == (1, 6, 1)
