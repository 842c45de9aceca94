"""Chaos through the real KCL daemon: seeded random kill -9s of record processors, relays, daemons
and the supervisor while records flow, plus one injected crash between a flush's pending manifest
and its checkpoint. Exact counts in the lake, the dead letters and the warehouse; nothing left
running after `local down`. Bounded to ~3 minutes."""

from __future__ import annotations

import random
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._fleet import (
    events,
    fleet_processes,
    kill9,
    live_processors,
    relay_of,
    start_supervisor,
    wait_gone,
)
from consumers.fleet import read_fleet_state
from consumers.proctree import cmdline
from etl.contract import load_contract
from etl.warehouse.loader import build_loader, warehouse_stats
from infra import local
from infra.pg import PgProcess, start_postgres
from tests.e2e.test_kcl_pipeline import dead_reasons, lake_ids, wait_for
from tests.e2e.test_supervision import assert_exactly_once, produce_in_background

pytestmark = pytest.mark.e2e
KINDS = ("processor", "relay", "daemon", "supervisor")


@pytest.fixture
def warehouse() -> Iterator[PgProcess]:
    state = Path(tempfile.mkdtemp(prefix="driftline-chaos-pg-"))  # see functional/conftest.py
    try:
        pg = start_postgres(state, durable=False)
        try:
            yield pg
        finally:
            pg.stop()
    finally:
        shutil.rmtree(state, ignore_errors=True)


def pick_victim(kind: str, work: Path, rng: random.Random, supervisor: int) -> int | None:
    if kind == "supervisor":
        return supervisor
    if kind == "daemon":
        groups = read_fleet_state(work).get("daemons", [])
        java = [g for g in groups if isinstance(g, int) and cmdline(g)]  # type: ignore[union-attr]
        return rng.choice(sorted(java)) if java else None
    procs = sorted(live_processors(work).values())
    if not procs:
        return None
    pid = rng.choice(procs)
    return relay_of(work, pid) if kind == "relay" else pid


@pytest.mark.parametrize(
    "pipeline", [{"shards": 4, "flush_max_records": 500, "flush_max_age_s": 1.0}], indirect=True
)
def test_chaos_kills_lose_and_duplicate_nothing(pipeline, warehouse, tmp_path: Path) -> None:
    settings, clients = pipeline
    state, rng = tmp_path / "state", random.Random(20261127)
    work = state / "consumers"
    token = tmp_path / "fault.fired"
    fault = {"DRIFTLINE_FAULT": "after_pending_manifest", "DRIFTLINE_FAULT_TOKEN": str(token)}
    settings = settings.replace(warehouse_dsn=warehouse.dsn, warehouse_schema="chaos")
    loader = build_loader(settings, load_contract(), clients)
    killed: list[tuple[str, int]] = []
    sup = start_supervisor(settings, work, 2, fault)
    try:
        # GIVEN two workers on four shards, one flush set to crash after its pending manifest
        assert wait_for(lambda: len(live_processors(work)) == 4, 300)
        # WHEN 8,000 records (1 % poison) flow while seeded kill -9s hit every kind of process
        producer, box = produce_in_background(
            settings, clients, records=8000, rate=400, seed=99, poison_rate=0.01
        )
        schedule = [*KINDS, *KINDS]  # each kind twice, in a seeded order, at seeded pauses
        rng.shuffle(schedule)
        for kind in schedule:
            time.sleep(rng.uniform(1.0, 2.5))
            victim = None
            for _ in range(120):  # while a fleet restarts, there is no processor to kill yet
                victim = pick_victim(kind, work, rng, sup.pid)
                if victim is not None:
                    break
                time.sleep(1.0)
            assert victim is not None, f"no {kind} to kill within 120 s"
            kill9(victim)
            killed.append((kind, victim))
            if kind == "supervisor":  # what systemd's Restart=always does
                sup.wait(10)
                sup = start_supervisor(settings, work, 2, fault)
            loader.run_once()  # the warehouse loads while the lake is being rewritten
        producer.join()
        (s,) = box
        poison = sum(s.poison.values())
        # THEN the lake holds every good record exactly once, the dead letters every poison one
        assert wait_for(
            lambda: (
                len(lake_ids(settings, clients)) >= s.good
                and sum(dead_reasons(settings, clients).values()) >= poison
            ),
            300,  # a whole fleet's restart takes 30-60 s here, minutes on a loaded machine
        )
        assert_exactly_once(settings, clients, set(s.good_ids))
        assert sum(dead_reasons(settings, clients).values()) == poison == 80
        # AND the injected crash fired once, and a processor replayed its pending range
        assert token.exists()
        assert any(int(str(e.doc["replay_ranges"])) > 0 for e in events(work, "initialized"))
        # AND the warehouse equals the lake, without duplicates
        while loader.run_once().manifests:
            pass
        stats = warehouse_stats(loader.warehouse, load_contract(), "chaos")
        assert (stats["warehouse_rows"], stats["warehouse_duplicates"]) == (s.good, 0)
        assert {kind for kind, _ in killed} == set(KINDS), killed  # every kind was hit
        # WHEN the local stack is brought down
        tree = fleet_processes(work)
        local.down(directory=state)
        # THEN nothing of the fleet is left running
        assert wait_gone(tree, 10) == []
        assert sup.wait(10) == 0
    finally:
        if sup.poll() is None:
            sup.send_signal(signal.SIGKILL)
        local.down(directory=state)
        loader.warehouse.close()
