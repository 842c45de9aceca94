"""``driftline retrain``: run the retrain loop by hand, or feed it one alarm event.

driftline retrain --now [--json]          # ungated run on the window ending now
driftline retrain --event FILE [--json]   # through the gate (idempotency, lock, cool-down)
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from etl.exceptions import ConfigError
from infra.argtypes import readable_file
from infra.commands._common import serving_settings
from infra.context import add_contract_option, clients_for, resolve_settings
from retrain.gate import handle_event
from retrain.run import run_retrain


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "retrain",
        help="retrain now, or handle one alarm event",
        description="Retrain on the last retrain_window_hours of the lake, compare with the"
        " champion on the same holdout, register, and promote if it wins by the margin.",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--now", action="store_true", help="run once, now (no gate)")
    mode.add_argument(
        "--event",
        type=readable_file,
        metavar="FILE",
        help="an EventBridge alarm event (JSON) to pass through the gate",
    )
    p.add_argument(
        "--at",
        default=None,
        metavar="ISO",
        help="end of the data window (default: now), e.g. 2026-03-01T08:00:00Z",
    )
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_contract_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings, local = resolve_settings(args=args)
    settings = serving_settings(settings, local)
    clients = clients_for(settings)
    now = datetime.now(UTC)
    if args.at:
        try:
            now = datetime.fromisoformat(args.at.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError("--at", f"expected an ISO-8601 time, got {args.at!r}") from None
        if now.tzinfo is None:
            raise ConfigError("--at", f"{args.at!r} needs a time zone, e.g. a trailing Z")
    if args.now:
        doc = run_retrain(settings, clients, event=None, now=now).to_dict()
    else:
        doc = handle_event(args.event.read_text(), settings, clients, now=now).to_dict()
    if args.json:
        print(json.dumps(doc, default=str))
    else:
        for key, value in doc.items():
            print(f"{key}: {value}")
    return 0
