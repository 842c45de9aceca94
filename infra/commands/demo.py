"""``driftline demo``: run the whole loop locally and print a summary (what `make demo` runs)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from infra.context import add_contract_option, contract_overrides
from infra.demo import run_demo


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run the whole loop locally, checked by a second reader"
    )
    p.add_argument("--records", type=int, default=5000)
    p.add_argument(
        "--shards",
        type=int,
        default=None,
        help="reshard the stream first (default: the template's)",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--scenario", choices=["stationary", "drift"], default="stationary")
    p.add_argument("--poison-rate", type=float, default=0.01)
    p.add_argument("--rate", type=float, default=500.0, help="records/s produced (default 500)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=240.0)
    p.add_argument(
        "--keep-up", action="store_true", help="leave the local stack running afterwards"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_contract_option(p)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    for name in ("records", "workers"):
        if getattr(args, name) < 1:
            print(f"driftline: error: --{name} must be >= 1", file=sys.stderr)
            return 2
    if not 0 <= args.poison_rate < 1:
        print("driftline: error: --poison-rate must be in [0, 1)", file=sys.stderr)
        return 2
    result = run_demo(
        contract_path=contract_overrides(args).get("contract_path"),
        records=args.records,
        shards=args.shards,
        workers=args.workers,
        scenario=args.scenario,
        poison_rate=args.poison_rate,
        rate=args.rate,
        seed=args.seed,
        timeout=args.timeout,
        keep_up=args.keep_up,
        progress=lambda m: print(f"… {m}", file=sys.stderr, flush=True),
    )
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    ok = (
        result["missing"] == 0
        and result["duplicates"] == 0
        and result["dead_letters"] == result["poison"]
    )
    return 0 if ok else 1
