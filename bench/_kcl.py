"""Shared parts of the benchmarks that run the real KCL MultiLangDaemon against the emulator.

An emulator with a lake bucket, Glue database and table; streams loaded with the ~1 KB records of
``bench.consumer_core`` (0.5 % poison); settings for one KCL application; the lease table's
checkpoints; the record-processor children of a daemon and their RSS from ``/proc``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.aws import AwsClients, configure_awswrangler
from etl.contract import Contract, load_contract
from etl.keys import sequence_key
from etl.lake import GlueCatalog, LakeLayout, Manifest
from etl.producer import KinesisProducer
from etl.settings import Settings, load_settings
from infra.emulator import EmulatorProcess, start_emulator

REPO = Path(__file__).resolve().parent.parent


def java_available() -> bool:
    return shutil.which("java") is not None


@dataclass
class Stack:
    """An emulator with a lake bucket, a Glue database and the contract's table."""

    emulator: EmulatorProcess
    clients: AwsClients
    bucket: str
    database: str
    streams: list[str] = field(default_factory=list)
    #: The contract file whose table the lake holds (None: the shipped example).
    contract_path: str | None = None

    @property
    def contract(self) -> Contract:
        return load_contract(self.contract_path)

    @classmethod
    def start(
        cls, state_dir: Path, contract_path: str | None = None, *, serialize: bool = True
    ) -> Stack:
        contract = load_contract(contract_path)
        emu = start_emulator(state_dir, serialize=serialize)
        try:
            clients = AwsClients(endpoint_url=emu.endpoint)
            configure_awswrangler(emu.endpoint)
            suffix = uuid.uuid4().hex[:8]
            bucket, db = f"bench-lake-{suffix}", f"bench_{suffix}"
            clients.client("s3").create_bucket(Bucket=bucket)
            clients.client("glue").create_database(DatabaseInput={"Name": db})
            GlueCatalog(
                contract,
                LakeLayout(bucket, contract.name),
                db,
                clients.session,
                endpoint_url=clients.endpoint_url,
            ).ensure_table()
        except BaseException:
            emu.stop()
            raise
        return cls(emu, clients, bucket, db, contract_path=contract_path)

    def stop(self) -> None:
        self.emulator.stop()

    def create_stream(self, shards: int) -> str:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        kinesis = self.clients.client("kinesis")
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
        self.streams.append(name)
        return name

    def settings(self, stream: str, application: str, **overrides: Any) -> Settings:
        return load_settings(
            {
                "endpoint_url": self.emulator.endpoint,
                "stream_name": stream,
                "lake_bucket": self.bucket,
                "glue_database": self.database,
                "application_name": application,
                **({"contract_path": self.contract_path} if self.contract_path else {}),
                **overrides,
            },
            env={},
            config_path=None,
        )


def payloads(n: int, seed: int = 7) -> tuple[list[tuple[bytes, str]], int]:
    """``n`` ~1 KB card-transaction payloads with 0.5 % poison; returns (payloads, poison count)."""
    from bench.consumer_core import POISON_RATE, make_records
    from etl.producer import poison_plan

    records = make_records(n, seed=seed)
    poison = len(poison_plan(n, POISON_RATE, seed))
    return [(r.data, r.partition_key) for r in records], poison


def load_stream(
    clients: AwsClients, stream: str, data: Iterable[tuple[bytes, str]], chunk: int = 5000
) -> dict[str, str]:
    """Put every payload on ``stream``; returns each shard's last sequence number."""
    producer = KinesisProducer(clients.client("kinesis"), stream)
    last: dict[str, str] = {}
    batch: list[tuple[bytes, str]] = []

    def put() -> None:
        result = producer.put(batch)
        for shard, seq in zip(result.shard_ids, result.sequence_numbers, strict=True):
            if shard not in last or sequence_key(seq) > sequence_key(last[shard]):
                last[shard] = seq
        batch.clear()

    for item in data:
        batch.append(item)
        if len(batch) >= chunk:
            put()
    if batch:
        put()
    return last


def lease_checkpoints(clients: AwsClients, application: str) -> dict[str, str]:
    """``{shard: checkpoint}`` from the KCL's lease table (empty until it exists)."""
    ddb = clients.client("dynamodb")
    try:
        items = ddb.scan(TableName=application)["Items"]
    except ddb.exceptions.ResourceNotFoundException:
        return {}
    return {i["leaseKey"]["S"]: i["checkpoint"]["S"] for i in items if "checkpoint" in i}


def reached(checkpoint: str | None, last: str) -> bool:
    return (
        checkpoint is not None
        and checkpoint.isdigit()
        and sequence_key(checkpoint) >= sequence_key(last)
    )


def committed_manifests(
    clients: AwsClients, bucket: str, table: str | None = None
) -> list[Manifest]:
    """The lake's committed manifests of ``table`` (the shipped example contract's by default)."""
    table = table or load_contract().name
    s3 = clients.client("s3")
    out: list[Manifest] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"manifests/{table}/"
    ):
        for o in page.get("Contents", []):
            m = Manifest.from_json(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
            if m.state == "committed":
                out.append(m)
    return out


def initialized(log_paths: Sequence[Path]) -> dict[str, int]:
    """``{shard: pid}`` of processors that logged ``initialized`` (ours and the count-only one).

    A worker's daemon.log stands for its folder: ours log to ``processor.log`` next to it, the
    count-only one to stderr (which the daemon copies into daemon.log).
    """
    shards: dict[str, int] = {}
    paths = [q for p in log_paths for q in (p, p.with_name("processor.log"))]
    for path in dict.fromkeys(paths):
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"msg": "initialized"' in line:
                doc = json.loads(line)
                shards[doc["shard"]] = int(doc.get("pid", 0))
    return shards


# -- processes ---------------------------------------------------------------------------------


def child_pids(parent: int, *, relays: bool = True) -> list[int]:
    """The daemon's record-processor processes, from /proc: each relay it started
    (``consumers.relay``) and the processor behind it; ``relays=False`` leaves the relays out."""
    from consumers.proctree import descendants_of

    pids = descendants_of(parent)
    return pids if relays else [p for p in pids if "consumers.relay" not in cmdline(p)]


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def read_chars(pid: int) -> int | None:
    """``rchar`` of ``pid``: bytes it passed to read(), its stdin pipe (the daemon's messages)
    included. A processor idle after ``initialize`` reads nothing until its first records arrive."""
    try:
        with open(f"/proc/{pid}/io") as fh:
            for line in fh:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def bench_env(count_dir: Path | None = None) -> None:
    """Make ``bench`` importable by the daemon's children (they inherit os.environ)."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if count_dir is not None:
        os.environ["DRIFTLINE_BENCH_COUNT_DIR"] = str(count_dir)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def now() -> float:
    return time.monotonic()


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` so far, in seconds (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
