"""Recovery after kill -9: how long a killed part's shards go unprocessed, and whether the other
shards pause at all.

    python -m bench.recovery [--repeats 5] [--strict] [--json]

One emulator, one stream of 4 shards, a supervisor (``driftline consume --workers 2``) run as its
own process, records produced at a steady rate throughout, flushes every second
(``flush_max_age_s=1``). Then, ``--repeats`` times each, kill -9 of:

* **processor**: one record processor (``consumers.app``); its relay restarts it in place;
* **relay**: the daemon's direct child, i.e. a processor crash as the KCL itself handles it
  (the daemon exits, the supervisor restarts it): the baseline the relay is measured against;
* **daemon**: one java MultiLangDaemon; the supervisor restarts it with the same worker id;
* **supervisor**: the whole fleet dies with it; a new supervisor is started at once (on EC2,
  systemd's ``RestartSec=5`` comes on top).

Measured from the kill to the moment every shard the victim was processing has flushed again
(the processors' own log timestamps), and the longest time any *other* shard went without a flush
meanwhile. Baseline of the pause: the longest gap between flushes in a quiet window before any
kill (the normal cadence). Targets: processor <= 10 s, daemon <= 15 s, supervisor <= 15 s
(medians); other shards' longest pause <= the normal cadence + one flush interval.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench._fleet import (
    first_flush_after,
    kill9,
    live_processors,
    longest_pause,
    relay_of,
    start_supervisor,
    wait_gone,
)
from bench._kcl import Stack, java_available, load_average
from consumers.fleet import read_fleet_state
from consumers.proctree import cmdline, descendants_of
from etl.producer import ProduceRun, produce
from etl.settings import Settings

TARGETS = {"processor": 10.0, "daemon": 15.0, "supervisor": 15.0}
FLUSH_S = 1.0
SHARDS, WORKERS = 4, 2


class Producer(threading.Thread):
    """Puts ``rate`` records a second until stopped."""

    def __init__(self, settings: Settings, stack: Stack, rate: int) -> None:
        super().__init__(daemon=True)
        self.settings, self.stack, self.rate = settings, stack, rate
        self.stop = threading.Event()

    def run(self) -> None:
        seed = 0
        while not self.stop.is_set():
            seed += 1
            produce(
                self.settings,
                self.stack.clients,
                ProduceRun(records=self.rate, rate=self.rate, seed=seed),
            )


def victim(kind: str, work: Path, rng: random.Random, supervisor: int) -> tuple[int, set[str]]:
    """The PID to kill and the shards it processes."""
    procs = live_processors(work)
    doc = read_fleet_state(work)
    if kind == "supervisor":
        return supervisor, set(procs)
    if kind == "daemon":
        java = rng.choice(sorted(int(g) for g in doc["daemons"]))  # type: ignore[union-attr]
        below = set(descendants_of(java))
        return java, {shard for shard, pid in procs.items() if relay_of(work, pid) in below}
    shard = rng.choice(sorted(procs))
    pid = procs[shard]
    relay = relay_of(work, pid)
    assert relay is not None, f"processor {pid} did not log its relay"
    return (relay if kind == "relay" else pid), {shard}


def steady(work: Path, timeout: float = 300.0) -> None:
    """Every shard has a live processor that flushed within the last 3 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(live_processors(work)) == SHARDS and first_flush_after(
            work, set(live_processors(work)), time.time() - 3.0
        ):
            return
        time.sleep(0.5)
    raise TimeoutError(f"the fleet did not reach a steady state; see {work}")


def one(kind: str, work: Path, rng: random.Random, supervisor: Any, restart: Any) -> dict[str, Any]:
    steady(work)
    pid, shards = victim(kind, work, rng, supervisor())
    others = set(live_processors(work)) - shards
    # A killed daemon's processors may still finish the call they are in (and flush): only a
    # processor started after the kill counts as the shard being processed again.
    before = frozenset(live_processors(work).values())
    killed = time.time()
    kill9(pid)
    if kind == "supervisor":
        wait_gone([pid], 10)
        restart()
    deadline = time.monotonic() + 300
    back = None
    while back is None and time.monotonic() < deadline:
        time.sleep(0.2)
        back = first_flush_after(work, shards, killed, before)
    if back is None:
        raise TimeoutError(f"{kind}: shards {sorted(shards)} not processed again within 300 s")
    pause = longest_pause(work, others, killed, back) if others else None
    print(
        f"bench.recovery: {kind} pid {pid} shards {sorted(shards)}: back after"
        f" {back - killed:.2f} s, other shards' longest pause {pause}",
        file=sys.stderr,
        flush=True,
    )
    return {
        "shards": sorted(shards),
        "recovery_s": round(back - killed, 2),
        "other_shards_longest_pause_s": None if pause is None else round(pause, 2),
    }


def run(repeats: int, seed: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    ok = False
    stack = Stack.start(tmp / "emulator")
    rng = random.Random(seed)
    work = tmp / "consumers"
    settings = stack.settings(
        stack.create_stream(SHARDS),
        f"bench-recovery-{uuid.uuid4().hex[:8]}",
        flush_max_age_s=FLUSH_S,
        flush_max_records=5_000,
    )
    box = [start_supervisor(settings, work, WORKERS)]
    producer = Producer(settings, stack, 200)
    producer.start()

    def restart() -> None:
        box[0] = start_supervisor(settings, work, WORKERS)

    try:
        steady(work)
        quiet_from = time.time()
        time.sleep(10)
        cadence = longest_pause(work, set(live_processors(work)), quiet_from, time.time())
        runs: dict[str, list[dict[str, Any]]] = {}
        for kind in ("processor", "relay", "daemon", "supervisor"):
            runs[kind] = [one(kind, work, rng, lambda: box[0].pid, restart) for _ in range(repeats)]
        ok = True
        return summarize(runs, cadence, repeats)
    finally:
        producer.stop.set()
        sup = box[0]
        if sup.poll() is None:
            sup.terminate()
            sup.wait(60)
        leftover = [p for p in descendants_of(sup.pid) if cmdline(p)]
        for p in leftover:
            kill9(p)
        producer.join(10)
        stack.stop()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"bench.recovery: logs kept in {tmp}", file=sys.stderr)


def summarize(
    runs: dict[str, list[dict[str, Any]]], cadence: float, repeats: int
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "shards": SHARDS,
        "workers": WORKERS,
        "repeats": repeats,
        "flush_interval_s": FLUSH_S,
        "normal_longest_gap_s": round(cadence, 2),
        "pause_limit_s": round(cadence + FLUSH_S, 2),
        "load_average": load_average(),
        "runs": runs,
    }
    ok = True
    for kind, rs in runs.items():
        median = statistics.median(r["recovery_s"] for r in rs)
        pauses = [p for r in rs if (p := r["other_shards_longest_pause_s"]) is not None]
        out[f"{kind}_median_s"] = round(median, 2)
        out[f"{kind}_others_max_pause_s"] = max(pauses) if pauses else None
        if kind in TARGETS and median > TARGETS[kind]:
            ok = False
    out["processor_vs_relay_ratio"] = round(out["processor_median_s"] / out["relay_median_s"], 3)
    others = out["processor_others_max_pause_s"]
    out["ok"] = ok and (others is None or others <= out["pause_limit_s"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not java_available():
        print("bench.recovery: skipped (no java)", file=sys.stderr)
        return 0
    result = run(args.repeats, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for kind in ("processor", "relay", "daemon", "supervisor"):
            target = TARGETS.get(kind)
            print(
                f"{kind:<10} median {result[f'{kind}_median_s']:>6.2f} s"
                f"  (target {'<= ' + str(target) if target else 'baseline'})"
                f"  other shards' longest pause {result[f'{kind}_others_max_pause_s']}"
            )
        print(
            f"normal longest gap between flushes {result['normal_longest_gap_s']} s;"
            f" pause limit {result['pause_limit_s']} s;"
            f" processor/relay {result['processor_vs_relay_ratio']}; ok={result['ok']}"
        )
    return 1 if args.strict and not result["ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
