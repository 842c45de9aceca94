"""HTTP load client for the local model server, run as its own process (loopback only).

Used by the swap test, the endpoint benchmark and the demo (failed requests during a model switch).

    python -m infra.loadgen --url http://127.0.0.1:PORT --requests 600 --rate 150 \
        --concurrency 8 --max-seconds 20 --out result.json

Each worker thread keeps one persistent HTTP/1.1 connection and sends ``POST /invocations`` with a
JSON record (``--record JSON``, else the features of one synthetic record of ``--contract PATH``,
the shipped example by default); the workers together pace to ``--rate`` requests/s (0 = as fast
as possible). Bounded by ``--requests`` and ``--max-seconds``. Writes a JSON summary: ok, failed
(non-200 or transport error, with the first few errors), latencies p50/p99, achieved rate, and
responses per model id.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


def contract_record(path: str | None = None, seed: int = 0) -> dict[str, Any]:
    """The features of one synthetic record of the contract at ``path`` (the example's if None)."""
    from etl.contract import load_contract
    from etl.synthetic import generate_records

    contract = load_contract(path)
    record = generate_records(1, seed=seed, contract=contract)[0]
    return {f.name: record.get(f.name) for f in contract.features}


def _percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile, ``q`` in 0–100 as ``numpy.percentile`` and ``infra.demo`` take it
    (nearest rank; NaN when there are no values)."""
    if not values:
        return float("nan")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q={q} must be in 0-100")
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[idx]


def run(
    url: str,
    *,
    requests: int,
    rate: float,
    concurrency: int,
    max_seconds: float,
    body: bytes,
    content_type: str = "application/json",
) -> dict[str, Any]:
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"refusing to load {url}: loopback only")
    host, port = parsed.hostname, parsed.port or 80
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    errors: list[str] = []
    models: Counter[str] = Counter()
    failed = 0
    start = time.perf_counter()
    deadline = start + max_seconds
    interval = 1.0 / rate if rate > 0 else 0.0

    def next_slot() -> float | None:
        nonlocal issued
        with lock:
            if issued >= requests:
                return None
            slot = start + issued * interval
            issued += 1
            return slot

    def worker() -> None:
        nonlocal failed
        conn = http.client.HTTPConnection(host, port, timeout=10)
        while True:
            slot = next_slot()
            if slot is None or time.perf_counter() > deadline:
                break
            delay = slot - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            try:
                conn.request(
                    "POST", "/invocations", body=body, headers={"Content-Type": content_type}
                )
                resp = conn.getresponse()
                payload = resp.read()
                elapsed = time.perf_counter() - t0
                with lock:
                    if resp.status == 200:
                        latencies.append(elapsed)
                        models[resp.getheader("X-Model-Id", "?")] += 1
                    else:
                        failed += 1
                        if len(errors) < 5:
                            errors.append(f"{resp.status}: {payload[:200]!r}")
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=10)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    failed += 1
                    if len(errors) < 5:
                        errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max_seconds + 15)
    seconds = time.perf_counter() - start
    ok = len(latencies)
    return {
        "ok": ok,
        "failed": failed,
        "errors": errors,
        "seconds": round(seconds, 3),
        "requests_per_second": round((ok + failed) / seconds, 1) if seconds > 0 else 0.0,
        "latency_p50_ms": round(_percentile(latencies, 50) * 1000, 3),
        "latency_p99_ms": round(_percentile(latencies, 99) * 1000, 3),
        "models": dict(models),
    }


def start_load(
    url: str,
    *,
    requests: int,
    rate: float,
    concurrency: int = 6,
    max_seconds: float = 60.0,
    out: Path,
    record: dict[str, Any] | None = None,
) -> subprocess.Popen[bytes]:
    """Start this client as a separate process; read its summary with :func:`load_result`.
    ``record`` is the request body's record (default: one of the shipped example contract)."""
    extra = ["--record", json.dumps(record)] if record is not None else []
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.loadgen",
            "--url",
            url,
            "--requests",
            str(requests),
            "--rate",
            str(rate),
            "--concurrency",
            str(concurrency),
            "--max-seconds",
            str(max_seconds),
            "--out",
            str(out),
            *extra,
        ],
        stdin=subprocess.DEVNULL,
    )


def load_result(proc: subprocess.Popen[bytes], out: Path, timeout: float = 120.0) -> dict[str, Any]:
    """Wait for a client started by :func:`start_load`; its summary (``failed``, ``ok``, ...)."""
    proc.wait(timeout)
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", required=True)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--rate", type=float, default=0.0, help="requests/s; 0 = unpaced")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-seconds", type=float, default=30.0)
    p.add_argument("--ready-file", default=None, help="touched once the workers start")
    p.add_argument("--out", default=None)
    p.add_argument("--record", default=None, help="the JSON record every request sends")
    p.add_argument("--contract", default=None, help="send a synthetic record of this contract")
    args = p.parse_args(argv)
    record = json.loads(args.record) if args.record else contract_record(args.contract)
    if args.ready_file:
        with open(args.ready_file, "w") as fh:
            fh.write("started")
    result = run(
        args.url,
        requests=args.requests,
        rate=args.rate,
        concurrency=args.concurrency,
        max_seconds=args.max_seconds,
        body=json.dumps(record).encode(),
    )
    text = json.dumps(result, sort_keys=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
