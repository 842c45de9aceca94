"""A record-processor child's RSS against its buffer limit, under the real KCL daemon.

    python -m bench.processor_memory [--limit-mib M] [--flushes F] [--strict] [--json]

One emulator (moto over HTTP on 127.0.0.1, started here), a one-shard stream, one real
MultiLangDaemon running ``consumers.app`` with ``flush_max_bytes`` = M MiB (default 32),
``flush_max_records`` = 10,000,000 and ``flush_max_age_s`` = 3600, so only the byte limit flushes.
Before the worker starts, the stream is loaded with enough ~1 KB card-transaction records (the ones
of ``bench.consumer_core``, 0.5 % poison) for F byte-limit flushes plus a half-full buffer; the
daemon delivers them in its usual batches (up to ``kcl_max_records`` = 10,000 per GetRecords).

Every 0.2 s this process reads ``VmRSS`` from ``/proc/<pid>/status`` of every child of the java
process (the record processors; found through ``/proc/*/stat``'s parent pid). When F flushes are
committed, the daemon gets SIGTERM and sampling goes on until it has exited. Target: the largest
sample stays under 2 x flush_max_bytes + 150 MB (``--strict`` exits 1 above it, or if fewer
flushes happened). The RSS right after ``initialize`` (imports, clients; no records yet) is
reported too. Loading is slow: moto's PutRecords costs O(records already in the shard) per record
(~3 min for 125,000 records here), which is why the default limit is 32 MiB, not the
production 64 MiB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from itertools import cycle, islice
from pathlib import Path
from typing import Any

from bench._kcl import (
    Stack,
    bench_env,
    child_pids,
    cmdline,
    committed_manifests,
    initialized,
    java_available,
    load_average,
    load_stream,
    payloads,
    rss_bytes,
)
from consumers.fleet import ConsumerFleet

MIB = 1024 * 1024
OVERHEAD = 150 * 1000 * 1000  # "+ 150 MB"
POOL = 40_000  # distinct payloads, cycled


class Sampler(threading.Thread):
    """Samples the RSS of the daemon's children every ``interval`` seconds."""

    def __init__(self, parent_pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.parent_pid = parent_pid
        self.interval = interval
        self.stop_event = threading.Event()
        self.max_rss: dict[int, int] = {}
        self.commands: dict[int, str] = {}
        self.samples = 0
        self.series: list[tuple[float, int]] = []  # (time, largest child RSS) per sample
        self.started = time.monotonic()

    def run(self) -> None:
        while not self.stop_event.is_set():
            largest = 0
            for pid in child_pids(self.parent_pid, relays=False):
                rss = rss_bytes(pid)
                if rss is None:
                    continue
                if pid not in self.commands:
                    self.commands[pid] = cmdline(pid)
                self.max_rss[pid] = max(rss, self.max_rss.get(pid, 0))
                largest = max(largest, rss)
            self.samples += 1
            self.series.append((time.monotonic() - self.started, largest))
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(5)


def run(
    limit_mib: int, flushes: int, *, timeout: float, kcl_max_records: int | None = None
) -> dict[str, Any]:
    limit = limit_mib * MIB
    tmp = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    stack: Stack | None = None
    fleet: ConsumerFleet | None = None
    sampler: Sampler | None = None
    saved = os.environ.get("PYTHONPATH")
    try:
        stack = Stack.start(tmp / "emulator")
        stream = stack.create_stream(1)
        pool, _ = payloads(POOL)
        mean = sum(len(d) for d, _ in pool) / len(pool)
        n = math.ceil((flushes + 0.5) * limit / mean)
        settings = stack.settings(
            stream,
            f"bench-mem-{uuid.uuid4().hex[:8]}",
            flush_max_bytes=limit,
            flush_max_records=10_000_000,
            flush_max_age_s=3600.0,
            **({"kcl_max_records": kcl_max_records} if kcl_max_records else {}),
        )
        # Loaded before the worker starts: moto's Kinesis is not thread-safe (a PutRecords during
        # a GetRecords fails the latter with "OrderedDict mutated during iteration").
        t = time.monotonic()
        load_stream(stack.clients, stream, islice(cycle(pool), n))
        load_s = time.monotonic() - t
        bench_env()
        fleet = ConsumerFleet(settings, 1, tmp / "fleet", restart=False)
        started = time.monotonic()
        fleet.start()
        worker = fleet.members[0]
        assert worker.pid is not None
        sampler = Sampler(worker.pid)
        sampler.start()
        deadline = started + timeout
        idle_rss: int | None = None
        committed = 0
        while committed < flushes:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {committed} of {flushes} flushes within {timeout:.0f}s;"
                    f" see {worker.log_path}"
                )
            if not worker.alive():
                raise RuntimeError(f"the daemon exited; see {worker.log_path}")
            if idle_rss is None:
                pids = initialized([worker.log_path])
                if pids:
                    idle_rss = rss_bytes(next(iter(pids.values())))
            time.sleep(1.0)
            committed = len(committed_manifests(stack.clients, stack.bucket))
        fleet.stop(timeout=60)  # shutdown_requested flushes the partial buffer, still sampled
        sampler.stop()
        manifests = committed_manifests(stack.clients, stack.bucket)
        processors = {
            pid: rss
            for pid, rss in sampler.max_rss.items()
            if "consumers.app" in sampler.commands[pid]
        }
        max_rss = max(processors.values()) if processors else 0
        bound = 2 * limit + OVERHEAD
        return {
            "flush_max_bytes": limit,
            "bound_bytes": bound,
            "records": n,
            "mean_record_bytes": round(mean),
            "stream_bytes": round(n * mean),
            "flushes": len(manifests),
            "lake_rows": sum(m.rows for m in manifests),
            "dead_letters": sum(m.dead_letters for m in manifests),
            "processors": len(processors),
            "idle_rss_bytes": idle_rss,
            "max_rss_bytes": max_rss,
            "max_rss_mib": round(max_rss / MIB, 1),
            "bound_mib": round(bound / MIB, 1),
            "ratio_to_bound": round(max_rss / bound, 3),
            "samples": sampler.samples,
            "load_seconds": round(load_s, 1),
            "seconds": round(time.monotonic() - started, 1),
            "load_average": load_average(),
            "rss_series_mib": [(round(t, 1), round(r / MIB)) for t, r in sampler.series[::5] if r],
        }
    finally:
        if sampler is not None:
            sampler.stop()
        if fleet is not None:
            fleet.stop(timeout=30)
        if stack is not None:
            stack.stop()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.processor_memory", description=__doc__)
    parser.add_argument("--limit-mib", type=int, default=32, help="flush_max_bytes in MiB")
    parser.add_argument("--flushes", type=int, default=3, help="byte-limit flushes to observe")
    parser.add_argument(
        "--kcl-max-records",
        type=int,
        default=None,
        help="records per GetRecords (default: the settings' default)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds")
    parser.add_argument("--strict", action="store_true", help="exit 1 above the bound")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--series", action="store_true", help="print the RSS series (1 s steps)")
    args = parser.parse_args(argv)
    if not java_available():
        print("processor_memory: skipped, 'java' not found (needs openjdk-17-jre-headless)")
        return 0
    result = run(
        args.limit_mib, args.flushes, timeout=args.timeout, kcl_max_records=args.kcl_max_records
    )
    series = result.pop("rss_series_mib")
    ok = result["max_rss_bytes"] < result["bound_bytes"] and result["flushes"] >= args.flushes
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"flush_max_bytes {args.limit_mib} MiB: {result['records']} records"
            f" (~{result['mean_record_bytes']} B, {result['stream_bytes'] / MIB:.0f} MiB) on one"
            f" shard, {result['flushes']} flushes, {result['lake_rows']} rows +"
            f" {result['dead_letters']} dead letters"
        )
        idle = result["idle_rss_bytes"]
        print(
            f"  processor RSS: max {result['max_rss_mib']} MiB over {result['samples']} samples"
            f" (after initialize: {idle / MIB if idle else float('nan'):.0f} MiB);"
            f" bound 2 x {args.limit_mib} MiB + 150 MB = {result['bound_mib']} MiB"
            f" -> {result['ratio_to_bound']:.0%} of it; load average {result['load_average']}"
        )
    if args.series:
        print("  t_s rss_mib: " + " ".join(f"{t}:{r}" for t, r in series))
    if args.strict and not ok:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
