"""Our record processor vs a count-only processor, both under the real KCL daemon, same run.

    python -m bench.kcl_throughput [--records N] [--shards S] [--strict] [--json]

One emulator (moto over HTTP on 127.0.0.1, started here). One stream with S shards is loaded with
N ~1 KB card-transaction records (0.5 % poison, the records of ``bench.consumer_core``) *before*
any worker starts. Then, one after the other, each side runs as one real MultiLangDaemon (Java,
KCL 3.1.3) in its own KCL application (a fresh lease table), so each reads the whole stream from
TRIM_HORIZON:

* **count**: ``bench._count_processor`` — a real amazon_kclpy v3 processor that counts each batch
  and checkpoints at its last sequence number. The ceiling: the daemon, the emulator's GetRecords
  and the multilang protocol (one JSON line per batch, base64 data) with no work of ours.
* **ours**: ``consumers.app`` — decode, validate, buffer, flush Parquet + dead letters + manifest
  to S3 and Glue partitions, checkpoint after each durable flush.

Both are launched the same way (``ConsumerFleet(module=...)`` writes the launcher script). What is
timed, by this process and not by the processors: from the moment the first shard's processor
logged ``initialized`` (the KCL's start-up — JVM, lease table, lease assignment — is excluded) to
the moment the lease table's checkpoint of every shard reaches that shard's last sequence number.
Checks: the count-only side counted exactly N records; our side's committed manifests hold exactly
N - poison rows and ``poison`` dead letters. Target: ours >= 60 % of the count-only rate
(``--strict`` exits 1 below it, or if a check fails).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench._kcl import (
    Stack,
    bench_env,
    child_pids,
    committed_manifests,
    cpu_seconds,
    initialized,
    java_available,
    lease_checkpoints,
    load_average,
    load_stream,
    payloads,
    reached,
    read_chars,
)
from consumers.fleet import ConsumerFleet

TARGET_RATIO = 0.60
MODULES = {"count": "bench._count_processor", "ours": "consumers.app"}


def _cpu(stack: Stack, java_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of the daemon, its processor children and the emulator."""
    if java_pid is None:
        return {}
    return {
        "java_s": cpu_seconds(java_pid) or 0.0,
        "processors_s": sum(cpu_seconds(p) or 0.0 for p in child_pids(java_pid)),
        "emulator_s": cpu_seconds(stack.emulator.pid) or 0.0,
    }


def run_side(
    stack: Stack,
    stream: str,
    last: dict[str, str],
    side: str,
    work: Path,
    *,
    timeout: float,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """One daemon, one fresh application over the loaded stream; timings observed from outside."""
    application = f"bench-{side}-{uuid.uuid4().hex[:8]}"
    settings = stack.settings(stream, application, **overrides)
    count_dir = work / "counts"
    count_dir.mkdir(parents=True, exist_ok=True)
    bench_env(count_dir)
    fleet = ConsumerFleet(settings, 1, work / "fleet", restart=False, module=MODULES[side])
    init: dict[str, float] = {}
    baseline_read: dict[str, int] = {}
    delivered: dict[str, float] = {}
    first_checkpoint: dict[str, float] = {}
    done: dict[str, float] = {}
    cpu: dict[str, float] = {}
    cpu_start: dict[str, float] = {}
    started = time.monotonic()
    fleet.start()
    worker = fleet.members[0]
    try:
        deadline = started + timeout
        while len(done) < len(last):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{side}: not every shard reached its last sequence number within"
                    f" {timeout:.0f}s (done: {sorted(done)}); see {worker.log_path}"
                )
            if not worker.alive():
                raise RuntimeError(f"{side}: the daemon exited; see {worker.log_path}")
            t = time.monotonic()
            for shard, pid in initialized([worker.log_path]).items():
                if shard in init:
                    continue
                init[shard] = t
                baseline_read[shard] = read_chars(pid) or 0
            pids = initialized([worker.log_path]) if init else {}
            for shard, pid in pids.items():
                # The first processRecords message: the idle child reads its stdin again.
                if shard not in delivered and (read_chars(pid) or 0) > baseline_read[shard]:
                    delivered[shard] = t
                    if not cpu_start:
                        cpu_start = _cpu(stack, worker.pid)
            if init:
                for shard, cp in lease_checkpoints(stack.clients, application).items():
                    if cp.isdigit() and shard not in first_checkpoint:
                        first_checkpoint[shard] = t
                    if shard in last and shard not in done and reached(cp, last[shard]):
                        done[shard] = t
            time.sleep(0.05)
        # CPU used so far by the daemon, its processor children and the emulator.
        cpu = {k: v - cpu_start.get(k, 0.0) for k, v in _cpu(stack, worker.pid).items()}
    finally:
        fleet.stop(timeout=30)
    if len(delivered) < len(init):
        raise RuntimeError(f"{side}: could not see the first delivery to every processor")
    # From the first records delivered to any processor until every shard is checkpointed at its
    # last record: the KCL's start-up and its first GetShardIterator/GetRecords are excluded.
    window = max(done.values()) - min(delivered.values())
    since_init = max(done.values()) - min(init.values())
    out: dict[str, Any] = {
        "module": MODULES[side],
        "application": application,
        "kcl_startup_s": round(min(init.values()) - started, 1),
        "init_spread_s": round(max(init.values()) - min(init.values()), 2),
        "first_delivery_after_init_s": round(min(delivered.values()) - min(init.values()), 2),
        "delivery_spread_s": round(max(delivered.values()) - min(delivered.values()), 2),
        "first_checkpoint_after_delivery_s": round(
            min(first_checkpoint.values()) - min(delivered.values()), 2
        ),
        "seconds": round(window, 2),
        "seconds_since_init": round(since_init, 2),
        # CPU used between the first delivery and the last checkpoint (2 vCPU here).
        "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
    }
    if side == "count":
        counts = {p.stem: int(p.read_text()) for p in count_dir.glob("*.count")}
        n = sum(counts.values())
        out["counted"] = n
    else:
        manifests = committed_manifests(stack.clients, settings.require("lake_bucket"))
        out["lake_rows"] = sum(m.rows for m in manifests)
        out["dead_letters"] = sum(m.dead_letters for m in manifests)
        out["flushes"] = len(manifests)
        n = int(out["lake_rows"]) + int(out["dead_letters"])
    out["records"] = n
    out["records_per_second"] = round(n / window, 1) if window > 0 else None
    out["records_per_second_since_init"] = round(n / since_init, 1) if since_init > 0 else None
    return out


def run(
    records: int,
    shards: int,
    *,
    order: list[str],
    timeout: float,
    overrides: dict[str, Any],
    serialize: bool = True,
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-kcl-"))
    stack: Stack | None = None
    saved_env = {k: os.environ.get(k) for k in ("PYTHONPATH", "DRIFTLINE_BENCH_COUNT_DIR")}
    try:
        stack = Stack.start(tmp / "emulator", serialize=serialize)
        stream = stack.create_stream(shards)
        data, poison = payloads(records)
        mean_bytes = sum(len(d) for d, _ in data) / len(data)
        t = time.monotonic()
        last = load_stream(stack.clients, stream, data)
        load_s = time.monotonic() - t
        del data
        result: dict[str, Any] = {
            "records": records,
            "poison": poison,
            "shards": shards,
            "mean_record_bytes": round(mean_bytes),
            "load_seconds": round(load_s, 1),
            "settings": overrides,
            "load_average_before": load_average(),
            "emulator_lock": serialize,
        }
        for side in order:
            result[side] = run_side(
                stack, stream, last, side, tmp / side, timeout=timeout, overrides=overrides
            )
        result["load_average_after"] = load_average()
        count, ours = result["count"], result["ours"]
        result["ratio"] = round(ours["records_per_second"] / count["records_per_second"], 3)
        result["target_ratio"] = TARGET_RATIO
        result["checks"] = {
            "count_side_counted_every_record": count["counted"] == records,
            "lake_rows_equal_good_records": ours["lake_rows"] == records - poison,
            "dead_letters_equal_poison": ours["dead_letters"] == poison,
        }
        return result
    finally:
        if stack is not None:
            stack.stop()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kcl_throughput", description=__doc__)
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--order", default="count,ours", help="sides in run order")
    parser.add_argument("--flush-records", type=int, default=10_000)
    parser.add_argument("--flush-age", type=float, default=1.0, help="flush_max_age_s")
    parser.add_argument("--timeout", type=float, default=300.0, help="per side, seconds")
    parser.add_argument("--strict", action="store_true", help=f"exit 1 below {TARGET_RATIO:.0%}")
    parser.add_argument(
        "--no-emulator-lock",
        action="store_true",
        help="leave moto's Kinesis/DynamoDB unserialized (to measure what the lock costs)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not java_available():
        print("kcl_throughput: skipped, 'java' not found (needs openjdk-17-jre-headless)")
        return 0
    order = [s.strip() for s in args.order.split(",")]
    if sorted(order) != ["count", "ours"]:
        parser.error("--order must name count and ours once each")
    overrides = {"flush_max_records": args.flush_records, "flush_max_age_s": args.flush_age}
    result = run(
        args.records,
        args.shards,
        order=order,
        timeout=args.timeout,
        overrides=overrides,
        serialize=not args.no_emulator_lock,
    )
    ok = all(result["checks"].values()) and result["ratio"] >= TARGET_RATIO
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.records} records (~{result['mean_record_bytes']} B, {result['poison']} poison)"
            f" on {args.shards} shards, loaded in {result['load_seconds']} s; one worker per side"
        )
        for side in order:
            r = result[side]
            print(
                f"  {side:5}  {r['records_per_second']:>9,.0f} records/s  {r['records']} records"
                f" in {r['seconds']} s (KCL start-up {r['kcl_startup_s']} s excluded)"
                f"  cpu {r['cpu_seconds']}"
            )
        print(
            f"  ours / count = {result['ratio']:.1%} (target >= {TARGET_RATIO:.0%});"
            f" checks {result['checks']}; load average {result['load_average_before']}"
            f" -> {result['load_average_after']}"
        )
    if args.strict and not ok:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
