"""A consumer supervisor run as its own process (``driftline consume``), watched from outside:
who processes which shard (the processors' own logs), when each shard last flushed, and every
process of the fleet's tree. Shared by ``bench.recovery`` and the supervision e2e tests."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from consumers.daemon import PROCESSOR_LOG
from consumers.fleet import read_fleet_state
from consumers.proctree import cmdline, descendants_of, group_members
from etl.settings import Settings, to_env


def start_supervisor(
    settings: Settings,
    work_dir: Path,
    workers: int,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``driftline consume --workers N --work-dir work_dir`` in its own session."""
    work_dir.mkdir(parents=True, exist_ok=True)
    full = {**os.environ, **to_env(settings), **(env or {}), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "infra.cli", "consume", "--workers", str(workers)]
    with (work_dir / "supervisor.log").open("ab") as log:
        return subprocess.Popen(
            [*cmd, "--work-dir", str(work_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full,
            start_new_session=True,
        )


@dataclass(frozen=True, slots=True)
class Event:
    ts: float  # epoch seconds
    msg: str
    shard: str
    pid: int
    doc: dict[str, object]


def events(work_dir: Path, msg: str | None = None) -> list[Event]:
    """The processors' log lines (of every worker), oldest first; only ``msg`` ones if given."""
    out: list[Event] = []
    for path in work_dir.glob(f"worker-*/{PROCESSOR_LOG}"):
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{") or (msg is not None and f'"msg": "{msg}"' not in line):
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill -9
            ts = datetime.fromisoformat(str(doc["ts"])).timestamp()
            out.append(Event(ts, str(doc["msg"]), str(doc.get("shard", "")), int(doc["pid"]), doc))
    return sorted(out, key=lambda e: e.ts)


def live_processors(work_dir: Path) -> dict[str, int]:
    """``{shard: pid}`` of record processors running now (the latest to initialize a shard)."""
    out: dict[str, int] = {}
    for e in events(work_dir, "initialized"):
        if "consumers.app" in " ".join(cmdline(e.pid)):
            out[e.shard] = e.pid
        else:
            out.pop(e.shard, None)
    return out


def relay_of(work_dir: Path, processor: int) -> int | None:
    """The relay in front of a record processor (its parent, unless the fleet's warm server
    forked it: the processor logs its relay when it starts)."""
    for e in events(work_dir, "processor started"):
        if e.pid == processor:
            return int(str(e.doc["relay"]))
    return None


def fleet_processes(work_dir: Path) -> list[int]:
    """Every live process of the fleet ``fleet.json`` records: supervisor, daemons, children."""
    doc = read_fleet_state(work_dir)
    pids: set[int] = set()
    sup = doc.get("supervisor")
    if isinstance(sup, int) and cmdline(sup):
        pids.add(sup)
        pids.update(descendants_of(sup))
    groups = doc.get("groups", [])
    for pgid in groups if isinstance(groups, list) else []:
        pids.update(group_members(int(pgid)))
    return sorted(p for p in pids if cmdline(p))


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs; returns those still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if cmdline(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if cmdline(p)]
    return left


def kill9(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def first_flush_after(
    work_dir: Path, shards: set[str], after: float, exclude: frozenset[int] = frozenset()
) -> float | None:
    """Epoch time by which every one of ``shards`` flushed after ``after`` (None: not yet),
    not counting flushes by ``exclude`` (processors of a killed daemon finish their last call)."""
    firsts: dict[str, float] = {}
    for e in events(work_dir, "flushed"):
        if e.ts > after and e.shard in shards and e.shard not in firsts and e.pid not in exclude:
            firsts[e.shard] = e.ts
    return max(firsts.values()) if len(firsts) == len(shards) else None


def longest_pause(work_dir: Path, shards: set[str], start: float, end: float) -> float:
    """The longest time any of ``shards`` went without a flush while [start, end] lasted
    (counting from its last flush before ``start``)."""
    flushes = events(work_dir, "flushed")
    worst = 0.0
    for shard in shards:
        times = [e.ts for e in flushes if e.shard == shard]
        before = [t for t in times if t <= start]
        points = [before[-1] if before else start] + [t for t in times if start < t < end] + [end]
        worst = max(worst, *(b - a for a, b in itertools.pairwise(points)))
    return worst
