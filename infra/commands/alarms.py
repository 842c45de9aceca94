"""``driftline alarms [--json]``: the stack's alarm states, and the local history of transitions.

States come from DescribeAlarms (names starting with the stack name unless ``--prefix`` says
otherwise); the history is what the local alarm evaluator recorded in
``<state dir>/alarm-history.jsonl``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from infra.alarm_evaluator import read_history
from infra.argtypes import at_least
from infra.context import clients_for, resolve_settings, state_dir


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("alarms", help="alarm states and their history")
    p.add_argument("--prefix", default=None, help="alarm name prefix (default: the stack name)")
    p.add_argument("--all", action="store_true", help="every alarm, whatever its name")
    p.add_argument(
        "--history", type=at_least(0), default=20, help="transitions to show (default 20)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_alarms)


def describe(cw: Any, prefix: str | None) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {"AlarmNamePrefix": prefix} if prefix else {}
    out: list[dict[str, Any]] = []
    while True:
        page = cw.describe_alarms(**kwargs)
        for a in page.get("MetricAlarms", []):
            ts = a.get("StateUpdatedTimestamp")
            out.append(
                {
                    "name": a["AlarmName"],
                    "state": a.get("StateValue"),
                    "metric": f"{a.get('Namespace', '')}/{a.get('MetricName', '')}",
                    "threshold": a.get("Threshold"),
                    "comparison": a.get("ComparisonOperator"),
                    "datapoints": f"{a.get('DatapointsToAlarm') or a.get('EvaluationPeriods')} of"
                    f" {a.get('EvaluationPeriods')} x {a.get('Period')}s",
                    "updated": ts.isoformat() if ts is not None else None,
                    "reason": a.get("StateReason"),
                }
            )
        token = page.get("NextToken")
        if not token:
            return out
        kwargs["NextToken"] = token


def _alarms(args: argparse.Namespace) -> int:
    settings, _ = resolve_settings()
    prefix = None if args.all else (args.prefix or settings.stack_name)
    alarms = describe(clients_for(settings).client("cloudwatch"), prefix)
    history = read_history(state_dir(), limit=args.history) if args.history > 0 else []
    if args.json:
        print(json.dumps({"alarms": alarms, "history": [asdict(h) for h in history]}, indent=1))
        return 0
    if not alarms:
        print(f"no alarms named {prefix}*" if prefix else "no alarms")
    for a in alarms:
        print(
            f"{a['state']:<18} {a['name']}  ({a['metric']} {a['comparison']} {a['threshold']},"
            f" {a['datapoints']})"
        )
        if a["reason"]:
            print(f"{'':<18} {a['reason']}")
    if history:
        print("\nhistory (oldest first):")
        for h in history:
            print(f"  {h.time}  {h.alarm_name}  {h.previous_state} -> {h.state}")
    return 0
