"""``driftline produce``: put seeded synthetic transactions (and some poison) on the stream."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime

from etl.exceptions import ConfigError
from etl.producer import ProduceRun, produce
from etl.synthetic import Scenario
from infra.context import add_contract_option, clients_for, resolve_settings

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "produce",
        help="put synthetic card transactions on the stream",
        description="Put seeded synthetic card transactions on the stream (the local stack's,"
        " unless DRIFTLINE_STREAM_NAME says otherwise), with an optional share of poison records"
        " (malformed JSON, wrong type, missing field, non-UTF-8, oversize), cycling the kinds.",
    )
    p.add_argument("--records", type=int, required=True, metavar="N", help="how many records")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="R",
        help="records per second (default: as fast as possible)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument(
        "--scenario",
        choices=[s.value for s in Scenario],
        default=Scenario.STATIONARY.value,
        help="stationary, or drift after --drift-at",
    )
    p.add_argument(
        "--poison-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="fraction of poison records, 0..1",
    )
    p.add_argument(
        "--drift-at", type=float, default=0.5, metavar="F", help="fraction of N where drift starts"
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_contract_option(p)
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    if args.records < 0:
        raise ConfigError("--records", f"must be >= 0, got {args.records}")
    if args.rate is not None and args.rate <= 0:
        raise ConfigError("--rate", f"must be > 0 records/s, got {args.rate}")
    if not 0.0 <= args.poison_rate <= 1.0:
        raise ConfigError("--poison-rate", f"must be a fraction in [0, 1], got {args.poison_rate}")
    if not 0.0 <= args.drift_at <= 1.0:
        raise ConfigError("--drift-at", f"must be a fraction in [0, 1], got {args.drift_at}")


def run(args: argparse.Namespace) -> int:
    _check(args)
    settings, _ = resolve_settings(args=args)
    summary = produce(
        settings,
        clients_for(settings),
        ProduceRun(
            records=args.records,
            rate=args.rate,
            seed=args.seed,
            scenario=Scenario(args.scenario),
            poison_rate=args.poison_rate,
            drift_at=args.drift_at,
            start=datetime.now(UTC),
        ),
    )
    doc = summary.to_dict()
    if args.json:
        print(json.dumps(doc, sort_keys=True))
        return 0
    poison = ", ".join(f"{k}={v}" for k, v in doc["poison"].items() if v) or "none"
    print(
        f"produced {doc['produced']} records to {doc['stream_name']} in {doc['seconds']} s"
        f" ({doc['records_per_second']} records/s): {doc['good']} good, poison: {poison};"
        f" {doc['retried']} entries retried"
    )
    return 0
