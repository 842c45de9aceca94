"""``driftline models``: the registry's versions, and the manual gate (approve, reject, rollback).

driftline models [--json]
driftline models approve VERSION     # deploy it, approve it, its baseline becomes current
driftline models reject VERSION      # reject it; if it was serving, the previous champion returns
driftline models rollback VERSION    # serve an earlier approved version again
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from etl.exceptions import RetrainError
from infra.commands._common import serving_settings
from infra.context import add_contract_option, clients_for, resolve_settings
from retrain import manual, registry
from retrain.runs import promotion_metric, settings_contract
from retrain.wiring import model_group


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "models",
        help="list model versions; approve, reject or roll back one",
        description="List the model package group's versions with metrics and status, or act on"
        " one: approve (deploy + approve + publish its baseline), reject, rollback.",
    )
    p.add_argument(
        "action", nargs="?", choices=["list", "approve", "reject", "rollback"], default="list"
    )
    p.add_argument("version", nargs="?", type=int, help="model version (for an action)")
    p.add_argument("--reason", default=None, help="recorded with the decision")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_contract_option(p)
    p.set_defaults(func=run)


def _row(v: registry.ModelVersion, champion: int | None, metric: str) -> dict[str, Any]:
    return {
        "version": v.version,
        "status": v.status,
        "serving": v.version == champion,
        metric: v.metrics.get(metric),
        f"champion_{metric}": v.champion_metrics.get(metric),
        "window_end": v.lineage.get("window_end"),
        "baseline_version": v.lineage.get("baseline_version"),
        "run_id": v.lineage.get("run_id"),
        # what started the run that made it (drift, quality, schedule, manual)
        "trigger": v.lineage.get("trigger"),
        "reason": v.reason,
    }


def _print_table(rows: list[dict[str, Any]], metric: str) -> None:
    print(f"{'ver':>4} {'status':<22} {metric:>8} {'vs champ':>9} {'trigger':<8}  reason")
    for r in rows:
        mark = "*" if r["serving"] else " "
        val = "" if r[metric] is None else f"{r[metric]:.4f}"
        champ = "" if r[f"champion_{metric}"] is None else f"{r[f'champion_{metric}']:.4f}"
        trig = r["trigger"] or "-"
        head = f"{r['version']:>3}{mark} {r['status']:<22} {val:>8} {champ:>9}"
        print(f"{head} {trig:<8}  {r['reason']}")


def run(args: argparse.Namespace) -> int:
    settings, local = resolve_settings(args=args)
    settings = serving_settings(settings, local)
    clients = clients_for(settings)
    if args.action == "list":
        group = model_group(settings)
        versions = registry.list_versions(clients.client("sagemaker"), group)
        champ = registry.champion(versions)
        metric = promotion_metric(settings, settings_contract(settings))
        rows = [_row(v, champ.version if champ else None, metric) for v in versions]
        if args.json:
            print(json.dumps({"group": group, "versions": rows}, default=str))
        else:
            _print_table(rows, metric)
        return 0
    if args.version is None:
        raise RetrainError(f"`driftline models {args.action}` needs a VERSION")
    done = manual.decide(settings, clients, args.action, args.version, reason=args.reason)
    out = done.to_dict()
    print(json.dumps(out) if args.json else " ".join(f"{k}={v}" for k, v in out.items()))
    return 0
