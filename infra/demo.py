"""``driftline demo``: the whole loop on this machine, checked by a second reader.

up → consume with the real KCL daemon → produce (with poison) → wait until every good record is in
the lake and every poison record in the dead letters → summary → down.

The lake is read back with pyarrow's S3 filesystem pointed at the emulator — not through the
writer's manifests — so the summary's ``duplicates`` and ``missing`` are what a reader would see.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from consumers.fleet import ConsumerFleet
from etl.aws import AwsClients, configure_awswrangler
from etl.contract import load_contract
from etl.producer import ProduceSummary, produce
from etl.settings import Settings
from infra import local
from infra.context import resolve_settings, state_dir

log = logging.getLogger("driftline.demo")


@dataclass
class LakeWatcher:
    """Reads new lake objects as they appear; records when each row became visible."""

    clients: AwsClients
    bucket: str
    prefix: str
    dead_letter_prefix: str
    seen: set[str] = field(default_factory=set)
    seen_pairs: set[tuple[str, str]] = field(default_factory=set)
    ids: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    partitions: set[str] = field(default_factory=set)
    dead_seen: set[str] = field(default_factory=set)
    dead_reasons: Counter[str] = field(default_factory=Counter)
    rows: int = 0

    def __post_init__(self) -> None:
        self.fs = pafs.S3FileSystem(**self.clients.s3_filesystem_kwargs())
        self.s3 = self.clients.client("s3")

    def _list(self, prefix: str) -> list[tuple[str, str]]:
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            out += [(o["Key"], o["ETag"]) for o in page.get("Contents", [])]
        return out

    def poll(self) -> None:
        now = datetime.now(UTC).timestamp()
        for key, etag in self._list(self.prefix):
            if not key.endswith(".parquet") or (key, etag) in self.seen_pairs:
                continue
            self.seen_pairs.add((key, etag))
            rewritten = key in self.seen
            self.seen.add(key)
            table = pq.read_table(
                f"{self.bucket}/{key}",
                filesystem=self.fs,
                columns=["transaction_id", "approximate_arrival_time"],
            )
            if rewritten:
                continue  # the same range rewritten by a replay: same rows, counted once
            self.rows += table.num_rows
            self.ids.update(table.column("transaction_id").to_pylist())
            arrivals = table.column("approximate_arrival_time").to_numpy(zero_copy_only=False)
            secs = arrivals.astype("datetime64[ms]").astype(np.int64) / 1000.0
            self.latencies.extend((now - secs).tolist())
            self.partitions.add(key.rsplit("/", 1)[0])
        for key, _ in self._list(self.dead_letter_prefix):
            if key in self.dead_seen:
                continue
            self.dead_seen.add(key)
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode()
            for line in body.splitlines():
                if line.strip():
                    self.dead_reasons[json.loads(line)["reason"]] += 1

    @property
    def dead_letters(self) -> int:
        return sum(self.dead_reasons.values())


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def initialized_shards(work_dir: Path) -> set[str]:
    """Shards whose record processor has initialized, from the workers' logs."""
    shards: set[str] = set()
    for path in work_dir.glob("worker-*/daemon.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"msg": "initialized"' in line:
                shards.add(json.loads(line)["shard"])
    return shards


def wait_until_consuming(fleet: ConsumerFleet, shards: int, timeout: float) -> float:
    """Seconds until a record processor runs for every shard (the KCL's start-up is over)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if len(initialized_shards(fleet.work_dir)) >= shards:
            return time.monotonic() - started
        fleet.supervise_once()
        time.sleep(0.5)
    raise TimeoutError(
        f"KCL workers did not start processors for all {shards} shards within {timeout:.0f}s;"
        f" see {fleet.work_dir}/worker-*/daemon.log"
    )


def run_demo(
    *,
    records: int = 5000,
    shards: int | None = None,
    workers: int = 2,
    scenario: str = "stationary",
    poison_rate: float = 0.01,
    rate: float | None = 500.0,
    seed: int = 7,
    timeout: float = 240.0,
    progress: Callable[[str], None] = lambda _m: None,
    keep_up: bool = False,
) -> dict[str, Any]:
    t0 = time.monotonic()
    d = state_dir()
    drift = scenario == "drift"
    up = local.up(
        progress=progress, parameters={"DriftWindowSeconds": str(DRIFT_WINDOW_S)} if drift else None
    )
    fleet: ConsumerFleet | None = None
    try:
        settings, _ = resolve_settings(_demo_overrides(drift))
        clients = AwsClients(region=settings.region, endpoint_url=settings.endpoint_url)
        configure_awswrangler(settings.endpoint_url)
        stream = settings.require("stream_name")
        n_shards = _shard_count(clients, stream)
        if shards is not None and shards != n_shards:
            clients.client("kinesis").update_shard_count(
                StreamName=stream, TargetShardCount=shards, ScalingType="UNIFORM_SCALING"
            )
            n_shards = shards
        if drift:
            progress(
                "publishing the drift baseline (stationary training data of the current model)"
            )
            baseline_uri = publish_demo_baseline(settings, clients, seed)
        progress(f"starting {workers} KCL worker(s) on {n_shards} shard(s)")
        fleet = ConsumerFleet(settings, workers, d / "consumers")
        fleet.start()
        lease_s = wait_until_consuming(fleet, n_shards, 150)
        progress(f"workers hold every lease after {lease_s:.1f}s; producing {records} records")
        contract = load_contract(settings.contract_path)
        watcher = LakeWatcher(
            clients,
            settings.require("lake_bucket"),
            f"{settings.lake_prefix}/{contract.name}/",
            f"{settings.dead_letter_prefix}/{contract.name}/",
        )
        monitor = DriftMonitor(clients, settings, up.state.outputs) if drift else None
        summary_box: list[ProduceSummary] = []
        producer = threading.Thread(
            target=lambda: summary_box.append(
                produce(
                    settings,
                    clients,
                    records=records,
                    rate=rate,
                    seed=seed,
                    scenario=scenario,
                    poison_rate=poison_rate,
                    start=datetime.now(UTC),
                )
            ),
            daemon=True,
        )
        p_start = time.monotonic()
        producer.start()
        deadline = time.monotonic() + timeout
        last_report = 0.0
        while time.monotonic() < deadline:
            time.sleep(1.0)
            watcher.poll()
            fleet.supervise_once()
            if monitor is not None:
                monitor.poll(time.monotonic() - p_start)
            if time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                extra = monitor.line() if monitor is not None else ""
                progress(f"lake rows {watcher.rows}, dead letters {watcher.dead_letters}{extra}")
            if summary_box:
                s = summary_box[0]
                poison = sum(s.poison.values())
                done = len(watcher.ids) >= s.good and watcher.dead_letters >= poison
                if done and (monitor is None or monitor.alarm_s is not None):
                    break
        producer.join(timeout=5)
        if not summary_box:
            raise TimeoutError("the producer did not finish")
        s = summary_box[0]
        elapsed = time.monotonic() - p_start
        good = set(s.good_transaction_ids)
        dupes = sum(c - 1 for c in watcher.ids.values() if c > 1)
        result: dict[str, Any] = {
            "produced": s.produced,
            "poison": sum(s.poison.values()),
            "poison_by_kind": s.poison,
            "lake_rows": watcher.rows,
            "dead_letters": watcher.dead_letters,
            "dead_letter_reasons": dict(watcher.dead_reasons),
            "duplicates": dupes,
            "missing": len(good - set(watcher.ids)),
            "partitions": len(watcher.partitions),
            "shards": n_shards,
            "workers": workers,
            "seconds": round(time.monotonic() - t0, 1),
            "stream_seconds": round(elapsed, 1),
            "records_per_second": round(s.produced / elapsed, 1) if elapsed else None,
            "latency_p50_s": _percentile(watcher.latencies, 50),
            "latency_p95_s": _percentile(watcher.latencies, 95),
            "kcl_lease_wait_s": round(lease_s, 1),
            "local_up_s": round(up.seconds, 1),
        }
        result.update(
            load_warehouse(settings, clients, up.state.extra.get("warehouse_dsn"), progress)
        )
        if monitor is not None:
            onset = records * DRIFT_AT / rate if rate else None
            result.update(
                {
                    "baseline": baseline_uri,
                    "drift_onset_s": round(onset, 1) if onset is not None else None,
                    "drift_alarm_s": monitor.alarm_s,
                    "max_drift_score": monitor.max_score,
                    "false_alarms": sum(
                        1 for t in monitor.alarm_times if onset is None or t < onset
                    ),
                    "alarm_state": monitor.state,
                }
            )
        return result
    finally:
        if fleet is not None:
            fleet.stop()
        if not keep_up:
            local.down()


DRIFT_WINDOW_S = 10
DRIFT_AT = 0.5


def load_warehouse(
    settings: Settings, clients: AwsClients, dsn: object, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Load every committed lake manifest into the local warehouse; its own row/lag statistics."""
    if not dsn:
        return {}
    from etl.warehouse.loader import build_loader, warehouse_stats

    settings = settings.replace(warehouse_dsn=str(dsn))
    contract = load_contract(settings.contract_path)
    loader = build_loader(settings, contract, clients)
    started = time.monotonic()
    while loader.run_once().manifests:
        pass
    progress(f"warehouse loaded in {time.monotonic() - started:.1f}s")
    stats = warehouse_stats(loader.warehouse, contract, settings.warehouse_schema)
    return {k: v for k, v in stats.items()}


def _demo_overrides(drift: bool = False) -> dict[str, Any]:
    # Small flushes so the demo shows results within seconds (production defaults are larger).
    out: dict[str, Any] = {"flush_max_records": 2000, "flush_max_age_s": 2.0}
    if drift:
        # Short windows (and a 10 s alarm period, a CloudWatch high-resolution period).
        out.update(
            drift_window_s=float(DRIFT_WINDOW_S), drift_min_rows=200, metrics_high_resolution=True
        )
    return out


def publish_demo_baseline(settings: Settings, clients: AwsClients, seed: int) -> str:
    """The baseline of the (stationary) data the current model was trained on."""
    from etl.profile import build_profile, save_baseline
    from etl.synthetic import generate_frame

    contract = load_contract(settings.contract_path)
    frame = generate_frame(20_000, seed=seed + 1000)
    profile = build_profile(frame, contract, source="demo: stationary training window")
    return save_baseline(
        clients.client("s3"),
        settings.require("lake_bucket"),
        settings.baseline_prefix,
        profile,
        make_current=True,
    )


@dataclass
class DriftMonitor:
    """Watches the drift alarm's state and the DriftScore metric while the demo runs."""

    clients: AwsClients
    settings: Settings
    outputs: dict[str, str]
    state: str = "?"
    alarm_s: float | None = None
    alarm_times: list[float] = field(default_factory=list)
    max_score: float | None = None

    def poll(self, elapsed: float) -> None:
        cw = self.clients.client("cloudwatch")
        name = self.outputs.get("DriftAlarmName")
        if name:
            alarms = cw.describe_alarms(AlarmNames=[name]).get("MetricAlarms", [])
            if alarms:
                new = alarms[0]["StateValue"]
                if new == "ALARM" and self.state != "ALARM":
                    self.alarm_times.append(elapsed)
                    if self.alarm_s is None:
                        self.alarm_s = round(elapsed, 1)
                self.state = new
        end = datetime.now(UTC)
        stats = cw.get_metric_statistics(
            Namespace=self.settings.metrics_namespace,
            MetricName="DriftScore",
            Dimensions=[{"Name": "Stream", "Value": self.settings.require("stream_name")}],
            StartTime=datetime.fromtimestamp(end.timestamp() - 3600, UTC),
            EndTime=end,
            Period=10,
            Statistics=["Maximum"],
        ).get("Datapoints", [])
        if stats:
            top = max(float(p["Maximum"]) for p in stats)
            self.max_score = round(max(top, self.max_score or 0.0), 4)

    def line(self) -> str:
        return f", drift score max {self.max_score}, alarm {self.state}"


def _shard_count(clients: AwsClients, stream: str) -> int:
    desc = clients.client("kinesis").describe_stream_summary(StreamName=stream)
    return int(desc["StreamDescriptionSummary"]["OpenShardCount"])


def settings_for_demo() -> Settings:
    settings, _ = resolve_settings(_demo_overrides())
    return settings


def default_state() -> Path:
    return state_dir()
