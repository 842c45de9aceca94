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
    load = _Load(parsed.hostname, parsed.port or 80, requests, rate, max_seconds)
    threads = [
        threading.Thread(target=load.worker, args=(body, content_type), daemon=True)
        for _ in range(concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max_seconds + 15)
    return load.summary()


class _Load:
    """The shared state of one run: the request schedule and what came back."""

    def __init__(
        self, host: str, port: int, requests: int, rate: float, max_seconds: float
    ) -> None:
        self.host, self.port, self.requests = host, port, requests
        self.lock = threading.Lock()
        self.issued = 0
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.models: Counter[str] = Counter()
        self.failed = 0
        self.start = time.perf_counter()
        self.deadline = self.start + max_seconds
        self.interval = 1.0 / rate if rate > 0 else 0.0

    def next_slot(self) -> float | None:
        """When the next request is due (a fixed schedule at ``rate``); None when all are out."""
        with self.lock:
            if self.issued >= self.requests:
                return None
            slot = self.start + self.issued * self.interval
            self.issued += 1
            return slot

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=10)

    def _failure(self, text: str) -> None:
        with self.lock:
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(text)

    def worker(self, body: bytes, content_type: str) -> None:
        conn = self._connect()
        while True:
            slot = self.next_slot()
            if slot is None or time.perf_counter() > self.deadline:
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
                if resp.status == 200:
                    with self.lock:
                        self.latencies.append(elapsed)
                        self.models[resp.getheader("X-Model-Id", "?")] += 1
                else:
                    self._failure(f"{resp.status}: {payload[:200]!r}")
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = self._connect()
            except (OSError, http.client.HTTPException) as exc:
                self._failure(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = self._connect()
        conn.close()

    def summary(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.start
        ok, failed = len(self.latencies), self.failed
        return {
            "ok": ok,
            "failed": failed,
            "errors": self.errors,
            "seconds": round(seconds, 3),
            "requests_per_second": round((ok + failed) / seconds, 1) if seconds > 0 else 0.0,
            "latency_p50_ms": round(_percentile(self.latencies, 50) * 1000, 3),
            "latency_p99_ms": round(_percentile(self.latencies, 99) * 1000, 3),
            "models": dict(self.models),
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
