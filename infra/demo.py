"""``driftline demo``: the whole loop on this machine, checked by a second reader.

up → consume with the real KCL daemon → produce (with poison) → wait until every good record is in
the lake and every poison record in the dead letters → summary → down. Any contract: the records
come from its generator plan, the lake is read back by its id field, and the model is named after
it (``--contract PATH``; the shipped card example by default).

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

from consumers.daemon import PROCESSOR_LOG
from consumers.fleet import ConsumerFleet
from etl.aws import AwsClients, configure_awswrangler
from etl.contract import DEFAULT_CONTRACT, Contract, load_contract
from etl.exceptions import DriftlineError
from etl.producer import ProduceRun, ProduceSummary, produce
from etl.settings import Settings, load_settings
from infra import local
from infra.context import LocalState, normalize_contract_path, resolve_settings, state_dir
from infra.demo_loop import LoopOptions, Rig, run_loop
from retrain.runs import model_name

log = logging.getLogger("driftline.demo")


@dataclass
class LakeWatcher:
    """Reads new lake objects as they appear; records when each row became visible."""

    clients: AwsClients
    bucket: str
    prefix: str
    dead_letter_prefix: str
    #: The contract's id field: a row's identity as the reader counts it.
    id_column: str
    #: Object keys already read. A replay rewrites the same key with the same rows: read once.
    seen: set[str] = field(default_factory=set)
    ids: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    partitions: set[str] = field(default_factory=set)
    dead_seen: set[str] = field(default_factory=set)
    dead_reasons: Counter[str] = field(default_factory=Counter)
    #: When set (epoch seconds): ``first_arrival`` is the earliest Kinesis arrival at or after it
    #: (the concept demo: when the first changed label reached the stream).
    since: float | None = None
    first_arrival: float | None = None

    def __post_init__(self) -> None:
        self.fs = pafs.S3FileSystem(**self.clients.s3_filesystem_kwargs())
        self.s3 = self.clients.client("s3")

    def _new_keys(self, prefix: str, seen: set[str]) -> list[str]:
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            out += [o["Key"] for o in page.get("Contents", []) if o["Key"] not in seen]
        seen.update(out)
        return out

    def poll(self) -> None:
        now = datetime.now(UTC).timestamp()
        for key in self._new_keys(self.prefix, self.seen):
            if not key.endswith(".parquet"):
                continue
            table = pq.read_table(
                f"{self.bucket}/{key}",
                filesystem=self.fs,
                columns=[self.id_column, "approximate_arrival_time"],
            )
            self.ids.update(str(v) for v in table.column(self.id_column).to_pylist())
            arrivals = table.column("approximate_arrival_time").to_numpy(zero_copy_only=False)
            secs = arrivals.astype("datetime64[ms]").astype(np.int64) / 1000.0
            self.latencies.extend((now - secs).tolist())
            self._note_arrivals(secs)
            self.partitions.add(key.rsplit("/", 1)[0])
        for key in self._new_keys(self.dead_letter_prefix, self.dead_seen):
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode()
            for line in body.splitlines():
                if line.strip():
                    self.dead_reasons[json.loads(line)["reason"]] += 1

    def _note_arrivals(self, secs: np.ndarray) -> None:
        if self.since is None:
            return
        later = secs[secs >= self.since]
        if later.size:
            first = float(later.min())
            self.first_arrival = min(first, self.first_arrival or first)

    @property
    def rows(self) -> int:
        return sum(self.ids.values())

    @property
    def dead_letters(self) -> int:
        return sum(self.dead_reasons.values())


def _percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile, ``q`` in 0–100 (``numpy.percentile``; as ``infra.loadgen``)."""
    return round(float(np.percentile(values, q)), 3) if values else None


def initialized_shards(work_dir: Path) -> set[str]:
    """Shards whose record processor has initialized, from the processors' logs."""
    shards: set[str] = set()
    for path in work_dir.glob(f"worker-*/{PROCESSOR_LOG}"):
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
        f" see {fleet.work_dir}/worker-*/daemon.log and {PROCESSOR_LOG}"
    )


@dataclass(frozen=True)
class DemoOptions:
    """``driftline demo``'s flags. ``scenario="drift"`` runs the closed retraining loop (see
    infra.demo_loop); ``contract_path`` (default: the ``contract_path`` setting, else the card
    example) is the contract the whole run follows."""

    records: int = 5000
    shards: int | None = None
    workers: int = 2
    scenario: str = "stationary"
    poison_rate: float = 0.01
    rate: float | None = 500.0
    seed: int = 7
    timeout: float = 240.0
    keep_up: bool = False
    contract_path: str | None = None
    #: ``scenario="concept"``: seconds between a record and its label (0: inline labels).
    label_delay: float = 0.0


@dataclass
class _Produced:
    """What a scenario put on the stream, and how long it streamed."""

    produced: int
    poison: int
    poison_by_kind: dict[str, int]
    good: set[str]
    seconds: float
    loop: dict[str, Any] = field(default_factory=dict)


def run_demo(
    options: DemoOptions | None = None, progress: Callable[[str], None] = lambda _m: None
) -> dict[str, Any]:
    """Bring the local stack up, start the consumers, run the scenario, return its summary
    (``run_demo(DemoOptions(records=2_000))["missing"]`` is 0 when every record arrived)."""
    opts = options or DemoOptions()
    t0 = time.monotonic()
    d = state_dir()
    overrides, params = _demo_settings(opts)
    contract = load_contract(overrides.get("contract_path"))
    if opts.scenario == "concept":  # before anything starts
        from infra.demo_concept import check_contract

        check_contract(contract)
    up = local.up(
        contract_path=overrides.get("contract_path"), progress=progress, parameters=params
    )
    url = local.console_url(up.state)
    if url:
        progress(f"console: {url} (open it to watch; `--keep` leaves it up after the summary)")
    fleet: ConsumerFleet | None = None
    try:
        settings, _ = resolve_settings(overrides)
        clients = AwsClients(region=settings.region, endpoint_url=settings.endpoint_url)
        configure_awswrangler(settings.endpoint_url)
        n_shards = _reshard(clients, settings.require("stream_name"), opts.shards)
        progress(f"starting {opts.workers} KCL worker(s) on {n_shards} shard(s)")
        fleet = ConsumerFleet(
            settings, opts.workers, d / "consumers", max_leases=-(-n_shards // opts.workers)
        )
        fleet.start()
        lease_s = wait_until_consuming(fleet, n_shards, 150)
        progress(f"workers run a processor for every shard after {lease_s:.1f}s")
        rig = Rig(settings, clients, fleet, _lake_watcher(clients, settings, contract))
        dsn = up.state.extra.get("warehouse_dsn")
        follower = WarehouseFollower(settings, clients, str(dsn)).start() if dsn else None
        if opts.scenario == "drift":
            run = _drift_loop(rig, up.state.outputs, d, opts, progress)
        elif opts.scenario == "concept":
            run = _concept_loop(rig, up.state.outputs, d, opts, progress)
        else:
            run = _stationary(rig, opts, progress)
        result = {
            "scenario": opts.scenario,
            "contract": contract.name,
            "model_name": model_name(settings),
            **_lake_figures(run, rig.watcher),
            "shards": n_shards,
            "workers": opts.workers,
            "seconds": round(time.monotonic() - t0, 1),
            **_stream_figures(run, rig.watcher),
            "kcl_start_s": round(lease_s, 1),
            "local_up_s": round(up.seconds, 1),
        }
        if follower is not None:
            result.update(follower.finish())
        result.update(run.loop)
        if opts.keep_up:  # the stack stays: its history is queryable at once (docs/analytics.md)
            result["history_exported"] = _export_history(settings, clients, d, progress)
        result["seconds"] = round(time.monotonic() - t0, 1)
        return result
    finally:
        if fleet is not None:
            fleet.stop()
        if not opts.keep_up:
            local.down()


def late_contract_path(path: str | None) -> str:
    """``--label-delay S > 0``: the contract's late-label variant (``[labels] arrival = "late"``,
    label records on the records' stream), written next to the local state; a contract that is
    already late is used as it is."""
    from importlib import resources

    from infra.demo_concept import late_contract_text

    contract = load_contract(path)
    if contract.labels.late and path is not None:
        return path
    if path is None:
        text = resources.files("etl.contracts").joinpath(DEFAULT_CONTRACT).read_text()
    else:
        text = Path(path).read_text()
    out = state_dir() / "demo-late-contract.toml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(late_contract_text(text, contract))
    load_contract(out)  # its own errors (e.g. a required label field) named before anything starts
    return str(out)


def _demo_settings(opts: DemoOptions) -> tuple[dict[str, Any], dict[str, str]]:
    """(settings overrides, stack parameters) for the run."""
    drift = opts.scenario in ("drift", "concept")
    overrides = _demo_overrides(drift)
    if opts.scenario == "concept":
        # the consumers score every batch with the model the loop serves (its cache's CURRENT)
        overrides.update(quality_scoring=True, model_cache_dir=str(state_dir() / "models"))
    path = opts.contract_path or load_settings().contract_path
    if path:  # absolute: the consumers and services run in other working directories
        overrides["contract_path"] = normalize_contract_path(path, "--contract")
    if opts.scenario == "concept" and opts.label_delay > 0:
        overrides["contract_path"] = late_contract_path(overrides.get("contract_path"))
    params = {"ModelName": model_name(load_settings(overrides))}
    if drift:
        params["DriftWindowSeconds"] = str(DRIFT_WINDOW_S)
    return overrides, params


def _reshard(clients: AwsClients, stream: str, shards: int | None) -> int:
    """The stream's shard count, after resharding to ``shards`` when another count is asked."""
    n_shards = _shard_count(clients, stream)
    if shards is not None and shards != n_shards:
        clients.client("kinesis").update_shard_count(
            StreamName=stream, TargetShardCount=shards, ScalingType="UNIFORM_SCALING"
        )
        n_shards = shards
    return n_shards


def _lake_watcher(clients: AwsClients, settings: Settings, contract: Contract) -> LakeWatcher:
    return LakeWatcher(
        clients,
        settings.require("lake_bucket"),
        f"{settings.lake_prefix}/{contract.name}/",
        f"{settings.dead_letter_prefix}/{contract.name}/",
        contract.id_field.name,
    )


def _loop_options(opts: DemoOptions) -> LoopOptions:
    """The closed loops' options (drift and concept) from the demo's flags."""
    return LoopOptions(
        history=opts.records,
        rate=opts.rate or 500.0,
        seed=opts.seed,
        poison_rate=opts.poison_rate,
        timeout=max(opts.timeout, 420.0),
    )


def _drift_loop(
    rig: Rig, outputs: dict[str, str], d: Path, opts: DemoOptions, progress: Callable[[str], None]
) -> _Produced:
    """The closed retraining loop; its model server is stopped, or kept with ``--keep``."""
    loop = run_loop(
        rig,
        outputs,
        d,
        _loop_options(opts),
        progress,
    )
    return _loop_produced(loop, d, opts)


def _concept_loop(
    rig: Rig, outputs: dict[str, str], d: Path, opts: DemoOptions, progress: Callable[[str], None]
) -> _Produced:
    """The concept-drift loop (infra.demo_concept); its model server stopped or kept."""
    from infra.demo_concept import ConceptOptions, run_concept_loop

    loop = run_concept_loop(
        rig,
        outputs,
        d,
        (
            _loop_options(opts),
            ConceptOptions(label_delay_s=opts.label_delay, window_s=float(DRIFT_WINDOW_S)),
        ),
        progress,
    )
    return _loop_produced(loop, d, opts)


def _loop_produced(loop: dict[str, Any], d: Path, opts: DemoOptions) -> _Produced:
    """A loop's figures as the demo's ``_Produced``; its model server stopped (kept: --keep)."""
    server = loop.pop("model_server")
    if opts.keep_up:
        keep_model_server(server, d)
    else:
        server.stop()
    return _Produced(
        produced=loop.pop("produced"),
        poison=loop.pop("poison"),
        poison_by_kind=loop.pop("poison_by_kind"),
        good=loop.pop("good_ids"),
        seconds=loop.pop("stream_seconds"),
        loop=loop,
    )


def _stationary(rig: Rig, opts: DemoOptions, progress: Callable[[str], None]) -> _Produced:
    progress(f"producing {opts.records} records")
    run = ProduceRun(
        records=opts.records,
        rate=opts.rate,
        seed=opts.seed,
        poison_rate=opts.poison_rate,
        start=datetime.now(UTC),
    )
    s, elapsed = _produce_and_wait(rig, run, opts.timeout, progress)
    return _Produced(s.produced, sum(s.poison.values()), s.poison, set(s.good_ids), elapsed)


def _stream_figures(run: _Produced, watcher: LakeWatcher) -> dict[str, Any]:
    return {
        "stream_seconds": round(run.seconds, 1),
        "records_per_second": round(run.produced / run.seconds, 1) if run.seconds else None,
        "latency_p50_s": _percentile(watcher.latencies, 50),
        "latency_p95_s": _percentile(watcher.latencies, 95),
    }


def _lake_figures(run: _Produced, watcher: LakeWatcher) -> dict[str, Any]:
    """What was produced against what the lake holds: every good record once, every poison one a
    dead letter."""
    return {
        "produced": run.produced,
        "poison": run.poison,
        "poison_by_kind": run.poison_by_kind,
        "lake_rows": watcher.rows,
        "dead_letters": watcher.dead_letters,
        "dead_letter_reasons": dict(watcher.dead_reasons),
        "duplicates": sum(c - 1 for c in watcher.ids.values() if c > 1),
        "missing": len(run.good - set(watcher.ids)),
        "partitions": len(watcher.partitions),
    }


def _export_history(
    settings: Settings, clients: AwsClients, d: Path, progress: Callable[[str], None]
) -> dict[str, int] | str:
    """`driftline lake export` for the kept stack: rows exported per table (or why not)."""
    from infra.analytics import exporter_for

    try:
        rows = exporter_for(settings, clients, d).run().rows
    except DriftlineError as exc:  # the demo's result stands without it
        return f"not exported: {exc}"
    progress(f"monitoring history exported into the lake: {rows}")
    return rows


def keep_model_server(server: Any, d: Path) -> None:
    """Record the demo's model server as a process of the local stack: the console and
    `driftline predict` find it, `driftline local down` stops it."""
    from infra.model_server import remember

    state = LocalState.load(d)
    if state is None:  # the stack went away meanwhile: nothing to keep it with
        server.stop()
        return
    state.pids["model_server"] = server.pid
    remember(state, server)
    state.save(d)


def _produce_and_wait(
    rig: Rig, run: ProduceRun, timeout: float, progress: Callable[[str], None]
) -> tuple[ProduceSummary, float]:
    """Produce in a thread while the watcher reads the lake; until everything is visible."""
    box: list[ProduceSummary] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            box.append(produce(rig.settings, rig.clients, run))
        except BaseException as exc:  # re-raised below with the producer's own error
            errors.append(exc)

    producer = threading.Thread(target=work, daemon=True)
    p_start = time.monotonic()
    producer.start()
    deadline = p_start + timeout
    last_report = 0.0
    watcher = rig.watcher
    while time.monotonic() < deadline:
        rig.tick()
        if errors:
            raise errors[0]
        if time.monotonic() - last_report > 5:
            last_report = time.monotonic()
            progress(f"lake rows {watcher.rows}, dead letters {watcher.dead_letters}")
        if (
            box
            and len(watcher.ids) >= box[0].good
            and watcher.dead_letters >= sum(box[0].poison.values())
        ):
            break
    producer.join(timeout=5)
    if not box:
        raise TimeoutError("the producer did not finish in time")
    return box[0], time.monotonic() - p_start


DRIFT_WINDOW_S = 10


@dataclass
class WarehouseFollower:
    """`driftline warehouse load --follow` in a thread: loads lake manifests as they commit."""

    settings: Settings
    clients: AwsClients
    dsn: str
    interval_s: float = 2.0
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from etl.warehouse.loader import build_loader

        self.settings = self.settings.replace(warehouse_dsn=self.dsn)
        self.contract = load_contract(self.settings.contract_path)
        self.loader = build_loader(self.settings, self.contract, self.clients)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval_s):
            try:
                self.loader.run_once()
            except Exception as exc:  # reported in the summary
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def start(self) -> WarehouseFollower:
        self.thread.start()
        return self

    def finish(self) -> dict[str, Any]:
        """Stop following, load what is left, and return the warehouse's own statistics."""
        from etl.warehouse.loader import warehouse_stats

        self.stop.set()
        self.thread.join(timeout=60)
        while self.loader.run_once().manifests:
            pass
        stats: dict[str, Any] = dict(
            warehouse_stats(self.loader.warehouse, self.contract, self.settings.warehouse_schema)
        )
        if self.errors:
            stats["warehouse_errors"] = self.errors[:5]
        return stats


def _demo_overrides(drift: bool = False) -> dict[str, Any]:
    # Small flushes so the demo shows results within seconds (production defaults are larger).
    out: dict[str, Any] = {"flush_max_records": 2000, "flush_max_age_s": 2.0}
    if drift:
        # Short windows (and a 10 s alarm period, a CloudWatch high-resolution period).
        out.update(
            drift_window_s=float(DRIFT_WINDOW_S), drift_min_rows=200, metrics_high_resolution=True
        )
    return out


def _shard_count(clients: AwsClients, stream: str) -> int:
    desc = clients.client("kinesis").describe_stream_summary(StreamName=stream)
    return int(desc["StreamDescriptionSummary"]["OpenShardCount"])
