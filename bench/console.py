"""The console's server time per page and the bytes of a first load, on a local stack holding 24 h
of per-window drift metrics for every feature.

    python -m bench.console [--rounds N] [--strict] [--json]

Seeds an emulator with ``tests.console_stack`` (24 h x 60 windows x (4 metrics x features + the
drift score + MaxPSI) through PutMetricData, lake flushes, dead letters, alarm transitions, two
registered models) and an embedded PostgreSQL warehouse loaded from that lake by the real loader
(the warehouse card queries it as the read-only role), serves the console as its own process
(``python -m infra.console``), and asks each page and each overview fragment ``--rounds`` times
after one warm-up request. Server time is the console's ``Server-Timing`` header (request in,
response out, including the backend calls).

Baseline measured in the same run: ``/healthz`` (no backend call), the floor of a request.
Targets (``--strict`` exits 1 above them): page p95 <= 300 ms, fragment p95 <= 100 ms, first load
of any page (HTML + its static files + the fragments it pulls, gzip as a browser asks) <= 300 KB.
The first (cold) request of each page is reported too: it reads everything the console then
caches (the drift page's 24 h of datapoints, the lake's manifests).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from etl.aws import AwsClients
from infra.emulator import start_emulator
from infra.model_server import start_model_server
from infra.pg import start_postgres, stop_postgres
from infra.procs import read_ready_file, spawn_module, stop_pid, wait_until
from tests.console_stack import seed, seed_models

PAGES = (
    "/",
    "/drift?hours=3",
    "/drift?hours=24",
    "/alarms",
    "/models",
    "/dead-letters",
    "/predict",
)
FRAGMENTS = ("stream", "consumers", "lake", "dead", "warehouse", "alarm", "serving")
PAGE_P95_MS, FRAGMENT_P95_MS, FIRST_LOAD_KB = 300.0, 100.0, 300.0


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _server_ms(resp: httpx.Response) -> float:
    found = re.search(r"dur=([0-9.]+)", resp.headers.get("server-timing", ""))
    assert found is not None, resp.headers
    return float(found.group(1))


def _env(settings: Any, state: Path) -> dict[str, str]:
    env = {**os.environ, "DRIFTLINE_STATE_DIR": str(state)}
    for key in (
        "endpoint_url",
        "stream_name",
        "lake_bucket",
        "glue_database",
        "application_name",
        "model_package_group",
        "drift_alarm_name",
        "model_server_url",
        "model_cache_dir",
        "warehouse_dsn",
        "warehouse_query_dsn",
    ):
        value = getattr(settings, key)
        if value is not None:
            env[f"DRIFTLINE_{key.upper()}"] = str(value)
    return env  # fmt: skip


def first_load(client: httpx.Client, path: str) -> int:
    """Bytes on the wire for ``path``, its scripts and styles, and the fragments it pulls."""
    page = client.get(path)
    total = page.num_bytes_downloaded
    refs = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    refs += re.findall(r'hx-get="(/fragment/[^"]+)"', page.text)
    for ref in dict.fromkeys(refs):
        total += client.get(ref).num_bytes_downloaded
    return total


def measure(url: str, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"pages": {}, "fragments": {}, "first_load_kb": {}}
    with httpx.Client(base_url=url, headers={"Accept-Encoding": "gzip"}, timeout=120) as client:
        floor = []
        for _ in range(rounds):
            floor.append(_server_ms(client.get("/healthz")))
        out["healthz_p95_ms"] = round(_p95(floor), 2)
        for kind, paths in (("pages", PAGES), ("fragments", [f"/fragment/{f}" for f in FRAGMENTS])):
            for path in paths:
                cold = _server_ms(client.get(path))
                times = [_server_ms(client.get(path)) for _ in range(rounds)]
                out[kind][path] = {"cold_ms": round(cold, 1), "p95_ms": round(_p95(times), 1),
                                   "p50_ms": round(sorted(times)[len(times) // 2], 1)}  # fmt: skip
        for path in PAGES:
            out["first_load_kb"][path] = round(first_load(client, path) / 1000, 1)
    return out


def load_warehouse(seeded: Any) -> int:
    """The seeded lake loaded into the warehouse by the real loader; returns the rows."""
    from etl.warehouse.loader import build_loader

    loader = build_loader(seeded.settings, seeded.contract, seeded.clients)
    try:
        return int(loader.run_once().rows)
    finally:
        loader.warehouse.close()


def run(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="driftline-bench-console-") as tmp:
        d = Path(tmp)
        emu = start_emulator(d)
        server = start_model_server(d / "server", None)
        pg = start_postgres(d / "pg")
        console_pid = None
        try:
            clients = AwsClients(endpoint_url=emu.endpoint)
            t0 = time.perf_counter()
            seeded = seed(clients, d, hours=24, extra_settings={
                "model_server_url": server.url, "model_server_token_file": str(server.token_file),
                "model_cache_dir": str(d / "server" / "models"),
                "warehouse_dsn": pg.dsn, "warehouse_query_dsn": pg.reader_dsn})  # fmt: skip
            seed_models(clients, seeded.settings, d / "work")
            warehouse_rows = load_warehouse(seeded)
            seed_s = time.perf_counter() - t0
            ready = d / "console.endpoint"
            proc = spawn_module(
                "infra.console",
                ["--port", "0", "--ready-file", str(ready)],
                d / "console.log",
                env=_env(seeded.settings, d),
            )
            console_pid = proc.pid
            url = wait_until(proc, lambda: read_ready_file(ready, lambda _u: True), timeout=60,
                             what="the console", log_path=d / "console.log")  # fmt: skip
            result = measure(url, rounds)
            result.update(seed_s=round(seed_s, 1), rounds=rounds, warehouse_rows=warehouse_rows)
            return result
        finally:
            if console_pid is not None:
                stop_pid(console_pid)
            server.stop()
            stop_postgres(pg)
            emu.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    r = run(args.rounds)
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        print(
            f"seeded in {r['seed_s']} s (warehouse: {r['warehouse_rows']} rows loaded);"
            f" /healthz p95 {r['healthz_p95_ms']} ms (baseline)"
        )
        for kind, budget in (("pages", PAGE_P95_MS), ("fragments", FRAGMENT_P95_MS)):
            for path, m in r[kind].items():
                share = m["p95_ms"] / budget
                print(
                    f"{path:<22} p50 {m['p50_ms']:>7} ms  p95 {m['p95_ms']:>7} ms"
                    f" ({share:.2f}x of {budget:.0f} ms)  cold {m['cold_ms']} ms"
                )
        for path, kb in r["first_load_kb"].items():
            ratio = kb / FIRST_LOAD_KB
            print(f"first load {path:<18} {kb:>6} KB ({ratio:.2f}x of 300 KB)")
    over = [p for p, m in r["pages"].items() if m["p95_ms"] > PAGE_P95_MS]
    over += [p for p, m in r["fragments"].items() if m["p95_ms"] > FRAGMENT_P95_MS]
    over += [p for p, kb in r["first_load_kb"].items() if kb > FIRST_LOAD_KB]
    if over:
        print(f"over target: {', '.join(over)}", file=sys.stderr)
    return 1 if over and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
