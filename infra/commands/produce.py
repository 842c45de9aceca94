"""``driftline produce``: put seeded synthetic transactions (and some poison) on the stream."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime

from etl.contract import Contract, load_contract
from etl.exceptions import ConfigError
from etl.label_producer import LateLabels
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
        help="stationary, or drift (inputs and label) or concept (label only) after --drift-at",
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
    p.add_argument(
        "--label-delay",
        type=float,
        default=None,
        metavar="S",
        help='late-label contracts ([labels] arrival = "late"): each label record is put S'
        " seconds after its data record (default 0)",
    )
    p.add_argument(
        "--label-coverage",
        type=float,
        default=1.0,
        metavar="F",
        help="late labels: the seeded share of records that get a label, 0..1 (default 1)",
    )
    p.add_argument(
        "--label-change-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="late labels: the seeded share of labels sent again, changed, 0..1 (default 0)",
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
    if args.label_delay is not None and args.label_delay < 0:
        raise ConfigError("--label-delay", f"must be >= 0 seconds, got {args.label_delay}")
    for flag, value in (
        ("--label-coverage", args.label_coverage),
        ("--label-change-rate", args.label_change_rate),
    ):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(flag, f"must be a fraction in [0, 1], got {value}")


def _late_labels(args: argparse.Namespace, contract: Contract) -> LateLabels | None:
    """The late-label options, or None; refused (naming the flag) for an inline contract."""
    given = args.label_delay is not None or args.label_coverage != 1.0
    given = given or args.label_change_rate != 0.0
    if not contract.labels.late:
        if given:
            raise ConfigError(
                "--label-delay",
                f"contract {contract.name!r} has inline labels; late label records need"
                ' [labels] arrival = "late" in the contract (docs/contracts.md)',
            )
        return None
    return LateLabels(
        delay_s=args.label_delay or 0.0,
        coverage=args.label_coverage,
        change_rate=args.label_change_rate,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    _check(args)
    settings, _ = resolve_settings(args=args)
    contract = load_contract(settings.contract_path)
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
            labels=_late_labels(args, contract),
        ),
        contract=contract,
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
        + (
            f"; {doc['labels_sent']} label records ({doc['labels_changed']} changed) for"
            f" {doc['labelled_ids']} ids"
            if "labels_sent" in doc
            else ""
        )
    )
    return 0
