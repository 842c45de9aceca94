"""Local endpoint latency and throughput: the model server, driven from a separate process.

    python -m bench.endpoint_latency [--requests N] [--strict] [--json]

Trains a model on seeded synthetic data (the shipped contract), starts ``infra.model_server`` on
127.0.0.1 and drives ``POST /invocations`` (one JSON record per request, keep-alive) from
``infra.loadgen`` in another process:

* **latency**: one client connection, requests back to back → p50 / p99;
* **throughput**: 8 connections, unpaced → requests/s (and p50 / p99 under that load);
* **swap**: paced at 150 requests/s while the model is switched 4 times → failed requests.

Targets (``--strict`` exits 1 below them): p99 (single client) < 50 ms, throughput >= 100
requests/s, zero failed requests during the swaps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from etl.synthetic import Scenario, generate_frame
from infra.model_server import start_model_server
from retrain.train import train

REPO = Path(__file__).resolve().parents[1]


def _load(url: str, *, requests: int, concurrency: int, rate: float = 0.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.loadgen",
            "--url",
            url,
            "--requests",
            str(requests),
            "--concurrency",
            str(concurrency),
            "--rate",
            str(rate),
            "--max-seconds",
            "60",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=120)
    doc: dict[str, Any] = json.loads(out)
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--strict", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
        root = Path(tmp)
        frame = generate_frame(20_000, seed=1, scenario=Scenario.DRIFT)
        dirs = []
        for name, part in (("alpha", frame.iloc[:10_000]), ("beta", frame.iloc[10_000:])):
            (root / name).mkdir()
            part.to_parquet(root / name / "train.parquet")
            train(root / name, root / f"{name}-model", hyperparameters={"model_id": name})
            dirs.append(root / f"{name}-model")
        server = start_model_server(root / "server", dirs[0], model_root=root)
        try:
            _result(_load(server.url, requests=200, concurrency=2))  # warm-up
            latency = _result(_load(server.url, requests=args.requests, concurrency=1))
            throughput = _result(_load(server.url, requests=args.requests, concurrency=8))
            swap_proc = _load(server.url, requests=900, concurrency=6, rate=150)
            time.sleep(1.0)
            for i in range(4):
                body = json.dumps({"model_dir": str(dirs[(i + 1) % 2])}).encode()
                assert server.token_file is not None
                req = urllib.request.Request(
                    f"{server.url}/admin/reload",
                    data=body,
                    method="POST",
                    headers={
                        "Content-Type": "application/json",
                        "Authorization": f"Bearer {server.token_file.read_text().strip()}",
                    },
                )
                with urllib.request.urlopen(req, timeout=30) as resp:
                    resp.read()
                time.sleep(0.7)
            swap = _result(swap_proc)
        finally:
            server.stop()

    doc = {
        "latency_p50_ms": latency["latency_p50_ms"],
        "latency_p99_ms": latency["latency_p99_ms"],
        "single_client_rps": latency["requests_per_second"],
        "throughput_rps": throughput["requests_per_second"],
        "loaded_p50_ms": throughput["latency_p50_ms"],
        "loaded_p99_ms": throughput["latency_p99_ms"],
        "swap_requests": swap["ok"] + swap["failed"],
        "swap_rps": swap["requests_per_second"],
        "failed_requests_during_swap": swap["failed"],
        "failed_total": latency["failed"] + throughput["failed"] + swap["failed"],
    }
    ok = (
        doc["latency_p99_ms"] < 50
        and doc["throughput_rps"] >= 100
        and doc["failed_requests_during_swap"] == 0
    )
    if args.json:
        print(json.dumps({**doc, "targets_met": ok}))
    else:
        print("local endpoint, 1 JSON record per request, client in another process")
        print(
            f"  single client : p50 {doc['latency_p50_ms']:.2f} ms, p99"
            f" {doc['latency_p99_ms']:.2f} ms, {doc['single_client_rps']:.0f} req/s"
        )
        print(
            f"  8 connections : {doc['throughput_rps']:.0f} req/s, p50"
            f" {doc['loaded_p50_ms']:.2f} ms, p99 {doc['loaded_p99_ms']:.2f} ms"
        )
        print(
            f"  4 model swaps at 150 req/s: {doc['swap_requests']} requests,"
            f" {doc['failed_requests_during_swap']} failed"
        )
        print(
            "  targets (p99 < 50 ms, >= 100 req/s, 0 failed during swap):",
            "met" if ok else "MISSED",
        )
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
