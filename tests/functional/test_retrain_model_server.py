"""The local model server on the SageMaker container contract, and the zero-downtime swap."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etl.synthetic import Scenario, generate_frame
from infra.model_server import Limits, ServerProcess, start_model_server
from retrain.backends.local import write_pointer
from retrain.train import train

pytestmark = pytest.mark.functional
REPO = Path(__file__).resolve().parents[2]
RECORD = {
    "amount": 12.5,
    "merchant_category": "grocery",
    "hour": 3,
    "distance_from_home_km": None,
    "device": "mobile",
    "country": "US",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two small trained models: 'alpha' on stationary data, 'beta' on drifted data."""
    root = tmp_path_factory.mktemp("models")
    frame = generate_frame(6000, seed=2, scenario=Scenario.DRIFT, drift_at=0.5)
    out = []
    for name, part in (("alpha", frame.iloc[:3000]), ("beta", frame.iloc[3000:])):
        (root / f"{name}-data").mkdir()
        part.to_parquet(root / f"{name}-data" / "train.parquet")
        train(
            root / f"{name}-data", root / name, hyperparameters={"model_id": name, "max_iter": 30}
        )
        out.append(root / name)
    return out[0], out[1]


@pytest.fixture(scope="module")
def running(
    models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, Path]]:
    """One server process for the module (starting one costs seconds on a loaded machine)."""
    state = tmp_path_factory.mktemp("server")
    srv = start_model_server(
        state,
        models[0],
        pointer=state / "CURRENT",
        limits=Limits(max_bytes=64_000),
        model_root=models[0].parent,
    )
    try:
        yield srv, state
    finally:
        srv.stop()


@pytest.fixture
def server(running: tuple[ServerProcess, Path], models: tuple[Path, Path]) -> ServerProcess:
    """The server, serving 'alpha' at the start of each test."""
    srv, state = running
    write_pointer(state, models[0])
    assert reload(srv, models[0])[0] == 200
    return srv


def reload(srv: ServerProcess, model_dir: Path) -> tuple[int, bytes, dict[str, str]]:
    """POST /admin/reload as its owner (with the token from the state folder)."""
    assert srv.token_file is not None
    body = json.dumps({"model_dir": str(model_dir)}).encode()
    return _call(srv.url, "/admin/reload", body, token=srv.token_file.read_text())


def _call(
    url: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "application/json",
    accept: str = "application/json",
    token: str | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    headers = {"Content-Type": content_type, "Accept": accept}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        f"{url}{path}", data=body, method="POST" if body is not None else "GET", headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _error(body: bytes) -> Any:
    return json.loads(body)["error"]


def test_ping_json_and_csv_invocations(server: ServerProcess) -> None:
    # GIVEN a server with model 'alpha'
    # WHEN pinged THEN it is healthy
    assert _call(server.url, "/ping")[0] == 200
    # WHEN one JSON record, a list, and the same rows as CSV are scored
    status, body, headers = _call(server.url, "/invocations", json.dumps(RECORD).encode())
    assert status == 200 and headers["X-Model-Id"] == "alpha"
    one = json.loads(body)["predictions"]
    status, body, _ = _call(
        server.url,
        "/invocations",
        json.dumps({"instances": [RECORD, {**RECORD, "amount": 900.0}]}).encode(),
    )
    two = json.loads(body)["predictions"]
    csv_body = (
        b"amount,merchant_category,hour,distance_from_home_km,device,country\n"
        b"12.5,grocery,3,,mobile,US\n900,grocery,3,,mobile,US\n"
    )
    status, body, headers = _call(server.url, "/invocations", csv_body, "text/csv", "text/csv")
    # THEN all three agree, and CSV answers one score per line
    assert status == 200 and headers["Content-Type"] == "text/csv"
    scores = [float(x) for x in body.decode().split()]
    assert len(one) == 1 and len(two) == 2 and two[0] == one[0]
    assert scores == pytest.approx([p["score"] for p in two])
    assert all(p["label"] == (p["score"] >= 0.5) for p in two)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (b"{not json", "application/json", 400, "the body is not valid JSON"),
        (
            json.dumps({**RECORD, "amount": "lots"}).encode(),
            "application/json",
            400,
            "record 0: feature 'amount' must be a number (float), got 'lots'",
        ),
        (
            json.dumps({**RECORD, "device": 7}).encode(),
            "application/json",
            400,
            "record 0: feature 'device' must be a string, got 7",
        ),
        (
            json.dumps({k: v for k, v in RECORD.items() if k != "hour"}).encode(),
            "application/json",
            400,
            "record 0: feature 'hour' is required and may not be null",
        ),
        (b"12.5,grocery\n", "text/csv", 400, "record 0: expected 6 CSV columns in the order"),
        (b"a=1", "application/x-www-form-urlencoded", 415, "content type"),
        (b" ", "application/json", 400, "the request body is empty; send at least one record"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(
    server: ServerProcess, body: bytes, content_type: str, status: int, error: str
) -> None:
    got_status, got_body, _ = _call(server.url, "/invocations", body, content_type)
    assert got_status == status
    assert _error(got_body).startswith(error)
    # AND the server keeps serving
    assert _call(server.url, "/invocations", json.dumps(RECORD).encode())[0] == 200


def test_an_oversized_body_is_refused_with_413(server: ServerProcess) -> None:
    status, body, _ = _call(server.url, "/invocations", b"[" + b" " * 70_000 + b"]")
    assert status == 413
    assert _error(body) == "the body has 70002 bytes; the limit is 64000"
    assert _call(server.url, "/ping")[0] == 200
    # AND on a keep-alive connection the next request after a 413 is served normally
    port = int(server.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST",
            "/invocations",
            body=b" " * 100_000,
            headers={"Content-Type": "application/json"},
        )
        first = conn.getresponse()
        assert (first.status, json.loads(first.read())["status"]) == (413, 413)
        conn.request(
            "POST",
            "/invocations",
            body=json.dumps(RECORD).encode(),
            headers={"Content-Type": "application/json"},
        )
        second = conn.getresponse()
        assert second.status == 200 and len(json.loads(second.read())["predictions"]) == 1
    finally:
        conn.close()


def test_reload_by_request_and_by_pointer(
    server: ServerProcess,
    models: tuple[Path, Path],
    running: tuple[ServerProcess, Path],
    tmp_path: Path,
) -> None:
    # WHEN reloaded by request THEN the next request is served by 'beta'
    status, body, _ = reload(server, models[1])
    assert status == 200 and json.loads(body)["model_id"] == "beta"
    assert _call(server.url, "/invocations", json.dumps(RECORD).encode())[2]["X-Model-Id"] == "beta"
    # WHEN a reload names a folder of the model cache without a model THEN 422, 'beta' serves
    empty = models[0].parent / "empty"
    empty.mkdir(exist_ok=True)
    status, body, _ = reload(server, empty)
    assert status == 422 and "still serving the previous model" in _error(body)
    assert _call(server.url, "/invocations", json.dumps(RECORD).encode())[2]["X-Model-Id"] == "beta"
    # WHEN the watched pointer names 'alpha' THEN the server switches within a second
    write_pointer(running[1], models[1])  # the pointer first moves to 'beta' (served already)
    time.sleep(0.6)
    write_pointer(running[1], models[0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if (
            _call(server.url, "/invocations", json.dumps(RECORD).encode())[2]["X-Model-Id"]
            == "alpha"
        ):
            break
        time.sleep(0.1)
    assert (
        _call(server.url, "/model")[1]
        and json.loads(_call(server.url, "/model")[1])["model_id"] == "alpha"
    )


def test_zero_failed_requests_during_swaps_under_load(
    server: ServerProcess, models: tuple[Path, Path], tmp_path: Path
) -> None:
    # GIVEN a load client in another process: 900 requests paced at 150/s
    out, ready = tmp_path / "load.json", tmp_path / "load.ready"
    client = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.loadgen",
            "--url",
            server.url,
            "--requests",
            "900",
            "--rate",
            "150",
            "--concurrency",
            "6",
            "--max-seconds",
            "30",
            "--out",
            str(out),
            "--ready-file",
            str(ready),
        ],
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # WHEN the model is switched four times while the load runs
        time.sleep(1.0)
        for i in range(4):
            target = models[(i + 1) % 2]
            assert reload(server, target)[0] == 200
            time.sleep(0.7)
        assert client.wait(timeout=60) == 0
    finally:
        if client.poll() is None:
            client.kill()
    # THEN not one request failed, the rate held >= 100/s, and both models answered
    result = json.loads(out.read_text())
    assert result["failed"] == 0, result["errors"]
    assert result["ok"] == 900
    assert result["requests_per_second"] >= 100
    assert set(result["models"]) == {"alpha", "beta"}
