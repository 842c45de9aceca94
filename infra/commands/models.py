"""``driftline models``: the registry's versions, and the manual gate (approve, reject, rollback).

driftline models [--json]
driftline models approve VERSION     # deploy it, approve it, its baseline becomes current
driftline models reject VERSION      # reject it; if it was serving, the previous champion returns
driftline models rollback VERSION    # serve an earlier approved version again
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from etl.exceptions import RetrainError
from etl.settings import Settings
from infra.context import LocalState, clients_for, resolve_settings
from retrain import registry
from retrain.handler import make_backends, model_group, work_dir
from retrain.promote import activate
from retrain.runs import promotion_metric, settings_contract

log = logging.getLogger(__name__)


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
    p.set_defaults(func=run)


def serving_settings(settings: Settings, local: LocalState | None) -> Settings:
    """Fill the local model server's URL from the local stack's state when not set."""
    if settings.model_server_url is None and local is not None:
        from infra.model_server import STATE_KEY

        url = (local.extra.get(STATE_KEY) or {}).get("url")
        if url:
            return settings.replace(model_server_url=url)
    return settings


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
        "reason": v.reason,
    }


def _print_table(rows: list[dict[str, Any]], metric: str) -> None:
    print(f"{'ver':>4} {'status':<22} {metric:>8} {'vs champ':>9}  reason")
    for r in rows:
        mark = "*" if r["serving"] else " "
        val = "" if r[metric] is None else f"{r[metric]:.4f}"
        champ = "" if r[f"champion_{metric}"] is None else f"{r[f'champion_{metric}']:.4f}"
        print(f"{r['version']:>3}{mark} {r['status']:<22} {val:>8} {champ:>9}  {r['reason']}")


def run(args: argparse.Namespace) -> int:
    settings, local = resolve_settings()
    settings = serving_settings(settings, local)
    clients = clients_for(settings)
    sm = clients.client("sagemaker")
    group = model_group(settings)
    versions = registry.list_versions(sm, group)
    champ = registry.champion(versions)
    if args.action == "list":
        metric = promotion_metric(settings, settings_contract(settings))
        rows = [_row(v, champ.version if champ else None, metric) for v in versions]
        if args.json:
            print(json.dumps({"group": group, "versions": rows}, default=str))
        else:
            _print_table(rows, metric)
        return 0
    if args.version is None:
        raise RetrainError(f"`driftline models {args.action}` needs a VERSION")
    target = registry.find(versions, args.version)
    _, serving = make_backends(settings, clients)
    s3 = clients.client("s3")
    image = "driftline/local-sklearn:latest"
    if settings.serving_backend == "sagemaker":
        from retrain.backends.sagemaker import resolve_image

        image = resolve_image(
            settings.region, settings.sklearn_framework_version, settings.sagemaker_serving_instance
        )
    done: dict[str, Any] = {"action": args.action, "version": target.version}
    if args.action == "reject":
        registry.set_status(sm, target, registry.REJECTED, reason=args.reason or "rejected by hand")
        if champ is not None and champ.version == target.version:
            fallback = registry.champion(registry.list_versions(sm, group))
            if fallback is not None:
                act = activate(
                    settings,
                    s3,
                    sm,
                    serving,
                    fallback,
                    image_uri=image,
                    reason=f"restored after v{target.version} was rejected",
                    staging_dir=work_dir(settings) / "manual",
                )
                done["serving"] = act.version.version
            else:
                done["serving"] = None
                log.warning("no approved version is left to serve")
    else:
        if args.action == "rollback" and target.status != registry.APPROVED:
            raise RetrainError(
                f"version {target.version} is {target.status}; rollback serves an earlier approved"
                f" version; use `driftline models approve {target.version}` to approve it"
            )
        act = activate(
            settings,
            s3,
            sm,
            serving,
            target,
            image_uri=image,
            reason=args.reason or f"{args.action} by hand",
            staging_dir=work_dir(settings) / "manual",
        )
        done.update(
            serving=act.version.version,
            endpoint=act.deployment.endpoint,
            baseline_uri=act.baseline_uri,
        )
    print(json.dumps(done) if args.json else " ".join(f"{k}={v}" for k, v in done.items()))
    return 0
